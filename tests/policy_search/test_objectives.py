"""The proxy objective's plain functions on hand-computed values, and its penalty rules."""

from __future__ import annotations

import logging
import math

import pytest

from policy_search.objectives import (
    PENALTY,
    half_k_penalty,
    norm_loss,
    penalised_value,
    proxy_objective,
    real_count_penalty,
)


def test_norm_loss_hand_computed() -> None:
    # l = (3, 4): ||l|| = 5, mean(3/5, 4/5) = 0.7
    assert norm_loss([3.0, 4.0]) == pytest.approx(0.7)
    # l = (1, 2, 2): ||l|| = 3, mean(1/3, 2/3, 2/3) = 5/9
    assert norm_loss([1.0, 2.0, 2.0]) == pytest.approx(5.0 / 9.0)


def test_norm_loss_is_scale_free_and_bounded() -> None:
    assert norm_loss([2.0, 2.0, 2.0, 2.0]) == pytest.approx(0.5)  # equal losses: 1/sqrt(N)
    assert norm_loss([200.0, 200.0, 200.0, 200.0]) == pytest.approx(0.5)
    assert norm_loss([0.0, 0.0, 7.0, 0.0]) == pytest.approx(0.25)  # one nonzero: 1/N
    assert norm_loss([0.0, 0.0]) == 0.0


@pytest.mark.parametrize("bad", [[], [1.0, math.nan], [1.0, -1.0], [math.inf]])
def test_norm_loss_rejects_bad_input(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="norm_loss"):
        norm_loss(bad)


def test_proxy_objective_hand_computed() -> None:
    # jigsaw (3, 4) -> 0.7; inpainting (1, 1) -> 1/sqrt(2)
    assert proxy_objective([3.0, 4.0], [1.0, 1.0]) == pytest.approx(0.7 - 1.0 / math.sqrt(2.0))


def test_proxy_objective_needs_same_batches() -> None:
    with pytest.raises(ValueError, match="same batches"):
        proxy_objective([1.0, 2.0], [1.0])


@pytest.mark.parametrize(
    ("k", "n", "penalised"),
    [
        (512, 128, False),
        (512, 256, False),
        (512, 257, True),
        (41, 21, True),
        (40, 20, False),
        (None, 999, False),
    ],
)
def test_half_k_rule(k: int | None, n: int, penalised: bool) -> None:
    penalty = half_k_penalty(k, n)
    assert (penalty is not None) == penalised
    if penalty is not None:
        assert penalty.rule == "half_k" and f"k={k}" in penalty.reason and f"n={n}" in penalty.reason


def test_real_count_rule_names_the_image() -> None:
    assert real_count_penalty(512, 100, [306, 369]) is None
    penalty = real_count_penalty(512, 306, [369, 306], ["a", "b"])
    assert penalty is not None and penalty.rule == "real_count"
    assert "'b'" in penalty.reason and "306" in penalty.reason and "k=512" in penalty.reason
    assert real_count_penalty(512, 400, [306, 369]) is not None


def test_penalised_value_logs_reason_and_returns_penalty(caplog: pytest.LogCaptureFixture) -> None:
    penalty = half_k_penalty(100, 80)
    assert penalty is not None
    with caplog.at_level(logging.WARNING, logger="policy_search.objectives"):
        value = penalised_value(penalty)
    assert value == PENALTY == 10.0
    assert "n > k/2" in caplog.text and "k=100" in caplog.text
