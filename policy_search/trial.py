"""NNI trial entry: one (k, n) policy -> one objective value (NNI minimises it).

    python -m policy_search.trial --cfg configs/config_search.yaml [--dotted.overrides]
    python -m policy_search.trial --objective downstream --cfg configs/config_inpainting_sample.yaml \
        --finetune_cfg configs/downstream_sample.yaml [--finetune_epochs 3]

Parameters from ``nni.get_next_parameter()`` are mapped onto the run's arguments BY NAME:
``aug_k``/``aug_n`` -> ``--aug_k``/``--aug_n`` (k = ``data...superpixels.params.n_segments``,
n = ``model...n_masked``); any dotted name (``model.init_args.lr``) -> that override; ``TRIAL_BUDGET``
(BOHB) or ``budget`` -> MIM epochs of the ``downstream`` objective. Paths in configs are relative to
the working directory, which NNI sets to ``trialCodeDirectory`` (the repository root). Inside NNI the
run directory goes under the trial's output folder (``$NNI_OUTPUT_DIR/runs``) unless ``--runs_dir`` is
given. Exceptions propagate: NNI marks the trial FAILED with the traceback in its ``stderr``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

POLICY_NAMES = ("aug_k", "aug_n")
BUDGET_NAMES = ("TRIAL_BUDGET", "budget")


def format_value(name: str, value: Any) -> str:
    """Render a parameter value as a command-line value (YAML/JSON readable by jsonargparse).

    Raises:
        ValueError: For ``aug_k``/``aug_n`` values that are not whole numbers.
    """
    if name in POLICY_NAMES:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
            raise ValueError(f"NNI parameter {name!r} must be a whole number (superpixels), got {value!r}")
        return str(int(value))
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def parameter_overrides(params: Mapping[str, Any] | None, allow_budget: bool = False) -> list[str]:
    """Map NNI parameter names onto command-line overrides, by name.

    Args:
        params: ``nni.get_next_parameter()``; None or empty gives no overrides.
        allow_budget: Accept ``TRIAL_BUDGET``/``budget`` (consumed by the caller, not mapped).

    Returns:
        Flat ``["--aug_k", "512", "--model.init_args.lr", "0.001", ...]`` in the parameters' order.

    Raises:
        ValueError: For a name that is neither a policy name, a budget (when allowed) nor a dotted
            config key; the message lists what is accepted.
    """
    out: list[str] = []
    for name, value in (params or {}).items():
        if name in BUDGET_NAMES and allow_budget:
            continue
        if name in POLICY_NAMES or ("." in name and all(name.split("."))):
            out += [f"--{name}", format_value(name, value)]
            continue
        budget = f", {'/'.join(BUDGET_NAMES)} (downstream objective only)" if not allow_budget else ""
        raise ValueError(
            f"unknown NNI parameter {name!r} in the search space: expected aug_k, aug_n{budget} or a "
            "dotted config key such as model.init_args.lr or data.init_args.batch_size"
        )
    return out


def budget_of(params: Mapping[str, Any] | None) -> int | None:
    """Epoch budget from ``TRIAL_BUDGET`` (BOHB) or a ``budget`` parameter, rounded up; None if absent.

    Raises:
        ValueError: For a budget below 1 or not a number.
    """
    for name in BUDGET_NAMES:
        if params and name in params:
            value = params[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1:
                raise ValueError(f"NNI parameter {name}={value!r}: expected a number of epochs >= 1")
            return int(math.ceil(value))
    return None


def _with_run_location(argv: list[str]) -> list[str]:
    """Inside NNI, keep run directories with the trial (``$NNI_OUTPUT_DIR/runs``) unless told otherwise."""
    output_dir = os.environ.get("NNI_OUTPUT_DIR")
    if output_dir and not any(a == "--runs_dir" or a.startswith("--runs_dir=") for a in argv):
        return [*argv, "--runs_dir", os.path.join(output_dir, "runs")]
    return argv


def run_proxy(argv: list[str], params: Mapping[str, Any] | None) -> float:
    """Proxy objective: ``run.main`` on a ``PolicyProxyObjective`` config.

    Returns:
        ``test["objective"]`` (the penalty for a penalised policy).

    Raises:
        KeyError: When the config's module does not report an ``objective``.
        ValueError: For a non-finite objective.
    """
    import run

    result = run.main(_with_run_location([*argv, *parameter_overrides(params)]))
    if "objective" not in result["test"]:
        raise KeyError(
            f"the run reported no 'objective' (test summary keys {sorted(result['test'])}): "
            "the proxy objective needs model.class_path policy_search.proxy_module.PolicyProxyObjective"
        )
    value = float(result["test"]["objective"])
    if not math.isfinite(value):
        raise ValueError(f"objective is not finite ({value}) for parameters {dict(params or {})}")
    return value


def run_downstream_objective(argv: list[str], params: Mapping[str, Any] | None) -> float:
    """Downstream objective (see :mod:`policy_search.downstream`): ``1 - validation Dice``."""
    from policy_search.downstream import downstream_objective, parse_downstream_args

    options, mim_argv = parse_downstream_args(argv)
    overrides = parameter_overrides(
        {k: v for k, v in (params or {}).items() if not k.startswith("finetune.")}, allow_budget=True
    )
    finetune = parameter_overrides(
        {k.removeprefix("finetune."): v for k, v in (params or {}).items() if k.startswith("finetune.")}
    )
    dice = downstream_objective(
        _with_run_location([*mim_argv, *overrides]),
        options.finetune_cfg,
        budget=budget_of(params) or options.mim_epochs,
        finetune_epochs=options.finetune_epochs,
        finetune_overrides=_with_run_location(finetune),
    )
    return 1.0 - dice


OBJECTIVES: dict[str, Callable[[list[str], Mapping[str, Any] | None], float]] = {
    "proxy": run_proxy,
    "downstream": run_downstream_objective,
}


def run_trial(argv: list[str], params: Mapping[str, Any] | None, objective: str = "proxy") -> float:
    """Evaluate one parameter set with a registered objective.

    Args:
        argv: ``--cfg FILE`` and overrides, as for ``run.py``.
        params: Parameters from the tuner.
        objective: Name in :data:`OBJECTIVES`.

    Returns:
        The value to minimise.

    Raises:
        ValueError: Unknown objective (and whatever the objective raises).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; expected one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[objective](argv, params)


def main(argv: list[str] | None = None) -> float:
    """Get parameters from NNI, run the objective, report the final result; exceptions propagate."""
    import nni

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], add_help=False)
    parser.add_argument("--objective", default="proxy", choices=sorted(OBJECTIVES))
    options, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    params = nni.get_next_parameter() or {}
    log.info("trial %s of experiment %s: parameters %s", nni.get_trial_id(), nni.get_experiment_id(), params)
    value = run_trial(rest, params, options.objective)
    nni.report_final_result(value)
    print(json.dumps({"trial": nni.get_trial_id(), "parameters": params, "objective": value}), flush=True)
    return value


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
