"""OptimConfig, the optimizer and schedule registries, and the task contract's configure_optimizers."""

from __future__ import annotations

import math

import pytest
import torch

from core.registry import UnknownNameError
from models.optim import OptimConfig, build_optimizer, build_scheduler, lr_factor


def test_lr_factor_hand_values():
    cos = OptimConfig(scheduler="cosine", warmup=2)
    assert lr_factor(cos, 0, 10) == pytest.approx(1 / 3) and lr_factor(cos, 1, 10) == pytest.approx(2 / 3)
    assert lr_factor(cos, 2, 10) == pytest.approx(1.0)
    assert lr_factor(cos, 6, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert lr_factor(OptimConfig(scheduler="poly", power=2.0), 5, 10) == pytest.approx(0.25)
    step = OptimConfig(scheduler="step", step_size=3, gamma=0.5)
    assert [lr_factor(step, t, 100) for t in (0, 2, 3, 7)] == [1.0, 1.0, 0.5, 0.25]
    assert lr_factor(OptimConfig(scheduler="cosine", min_lr_factor=0.1), 10, 10) == pytest.approx(0.1)
    assert lr_factor(OptimConfig(scheduler="none"), 99, 10) == 1.0


def test_optimizers_by_name():
    w = torch.nn.Parameter(torch.ones(2))
    sgd = build_optimizer([w], OptimConfig(name="sgd", lr=0.1, momentum=0.9))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] is True
    plain = build_optimizer([w], OptimConfig(name="sgd", lr=0.1, momentum=0.9, nesterov=False))
    assert plain.defaults["nesterov"] is False
    assert isinstance(build_optimizer([w], OptimConfig(name="adamw", weight_decay=0.1)), torch.optim.AdamW)
    lars = build_optimizer([w], OptimConfig(name="lars", lars_eta=0.01))
    assert type(lars).__name__ == "LARS" and lars.defaults["eta"] == 0.01


def test_scheduler_steps_the_factor():
    w = torch.nn.Parameter(torch.ones(1))
    cfg = OptimConfig(name="sgd", lr=1.0, momentum=0.0, scheduler="step", step_size=2, gamma=0.1)
    opt = build_optimizer([w], cfg)
    sched = build_scheduler(opt, cfg, total=10)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])
    with pytest.raises(ValueError, match="'cosine' needs trainer.max_epochs >= 1, got -1"):
        build_scheduler(opt, OptimConfig(name="sgd", scheduler="cosine"), total=-1)


def test_step_schedule_needs_no_run_length():
    # Regression: ALPNet's step schedule refused max_steps 0 (bench/fewshot_sample.py --steps 0, the
    # untrained baseline) although its factor depends on the step count only.
    w = torch.nn.Parameter(torch.ones(1))
    cfg = OptimConfig(
        name="sgd", lr=1.0, momentum=0.0, scheduler="step", step_size=1, gamma=0.5, interval="step"
    )
    opt = build_optimizer([w], cfg)
    sched = build_scheduler(opt, cfg, total=0)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="schedule 'poly' needs"):
        build_scheduler(opt, OptimConfig(scheduler="poly", interval="step"), total=0)


def test_constant_schedule_needs_no_run_length():
    w = torch.nn.Parameter(torch.ones(1))
    cfg = OptimConfig(name="sgd", lr=0.5, momentum=0.0, scheduler="none", warmup=1)
    opt = build_optimizer([w], cfg)
    sched = build_scheduler(opt, cfg, total=0)  # max_epochs 0: test the initial weights
    lrs = []
    for _ in range(3):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.25, 0.5, 0.5])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"name": "adma"}, UnknownNameError, "unknown optimizer 'adma': did you mean 'adam'"),
        ({"scheduler": "cosin"}, UnknownNameError, "unknown schedule 'cosin': did you mean 'cosine'"),
        ({"lr": 0.0}, ValueError, "optim.lr must be > 0"),
        ({"warmup": -1}, ValueError, "warmup >= 0"),
        ({"interval": "batch"}, ValueError, "'epoch' or 'step'"),
    ],
)
def test_bad_settings_fail_when_built(kwargs, error, match):
    with pytest.raises(error, match=match):
        OptimConfig(**kwargs)


def test_coerce_merges_a_partial_dict_over_the_family_default():
    default = OptimConfig(name="sgd", lr=5e-3, momentum=0.99)
    merged = OptimConfig.coerce({"lr": 0.1}, default)
    assert (merged.name, merged.lr, merged.momentum) == ("sgd", 0.1, 0.99)
    assert OptimConfig.coerce(None, default) is default
    with pytest.raises(ValueError, match="unknown key 'lrr': did you mean 'lr'"):
        OptimConfig.coerce({"lrr": 1.0}, default)
