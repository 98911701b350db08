"""Read a policy-search experiment back: best (k, n), top trials, a scatter plot and an override file.

    python -m policy_search.report EXPERIMENT_ID [--out DIR] [--experiments_dir ~/nni-experiments]
    python -m policy_search.report EXPERIMENT_ID --port 8080        # a RUNNING experiment, over REST

By default the experiment's own database ``<experiments_dir>/<id>/db/nni.sqlite`` is read directly
(read-only): it works for running, stopped and finished experiments alike and needs no NNI manager
(``Experiment.view`` would have to start one on a free port). With ``--port`` the running experiment is
asked instead (``Experiment.connect(port).export_data()`` / ``.list_trial_jobs()``).

Writes ``<out>/objective_scatter.png`` (objective over (k, n); penalised trials as crosses) and
``<out>/best_policy.yaml`` (top-level ``aug_k``/``aug_n``), which step 3 stacks on the MIM config:
``python run.py --cfg configs/config_inpainting.yaml --cfg <out>/best_policy.yaml``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.errors import run_entry_point
from datasets.atomic_io import atomic_path, atomic_write_text
from policy_search.objectives import PENALTY

DEFAULT_EXPERIMENTS_DIR = "~/nni-experiments"


@dataclass
class TrialRecord:
    """One trial of an experiment.

    Attributes:
        trial_id: NNI trial id.
        status: Last status (``SUCCEEDED``, ``FAILED``, ``RUNNING``, ``USER_CANCELED``, ...).
        params: The tuner's parameters (``aug_k``, ``aug_n``, ...).
        value: Final result (None when the trial reported none).
    """

    trial_id: str
    status: str
    params: dict[str, Any] = field(default_factory=dict)
    value: float | None = None


def _metric_value(data: str) -> float:
    """NNI stores a metric as a JSON string holding the JSON of the value (a number or ``{"default": x}``)."""
    value = json.loads(data)
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, dict):
        value = value["default"]
    return float(value)


def read_database(
    experiment_id: str, experiments_dir: str = DEFAULT_EXPERIMENTS_DIR
) -> tuple[list[TrialRecord], str]:
    """Trials and ``optimize_mode`` from an experiment's on-disk database.

    Raises:
        FileNotFoundError: When ``<experiments_dir>/<id>/db/nni.sqlite`` does not exist.
    """
    path = Path(experiments_dir).expanduser() / experiment_id / "db" / "nni.sqlite"
    if not path.is_file():
        raise FileNotFoundError(
            f"no NNI database for experiment {experiment_id!r} at {path} (check the id with `nnictl "
            "experiment list --all`, or pass --experiments_dir when experimentWorkingDirectory was set)"
        )
    trials: dict[str, TrialRecord] = {}
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as db:
        events = db.execute("select trialJobId, event, data from TrialJobEvent order by timestamp").fetchall()
        for trial_id, event, data in events:
            record = trials.setdefault(trial_id, TrialRecord(trial_id, event))
            record.status = event
            if data:
                record.params = json.loads(data).get("parameters", record.params)
        for trial_id, data in db.execute("select trialJobId, data from MetricData where type = 'FINAL'"):
            if trial_id in trials:
                trials[trial_id].value = _metric_value(data)
        profile = db.execute("select params from ExperimentProfile order by revision desc limit 1").fetchone()
    mode = _optimize_mode(json.loads(profile[0]) if profile else {})
    return list(trials.values()), mode


def _optimize_mode(params: dict[str, Any]) -> str:
    for key in ("tuner", "advisor"):
        args = (params.get(key) or {}).get("classArgs") or {}
        if "optimize_mode" in args:
            return str(args["optimize_mode"])
    return "minimize"


def read_rest(port: int, experiment_id: str) -> tuple[list[TrialRecord], str]:
    """Trials and ``optimize_mode`` of the experiment running at ``127.0.0.1:port``.

    Raises:
        ValueError: When another experiment runs at that port.
    """
    from nni.experiment import Experiment

    experiment = Experiment.connect(port)
    if experiment.id != experiment_id:
        raise ValueError(f"port {port} serves experiment {experiment.id!r}, not {experiment_id!r}")
    values = {
        r.trialJobId: (r.parameter, float(r.value if not isinstance(r.value, dict) else r.value["default"]))
        for r in experiment.export_data()
    }
    records = []
    for job in experiment.list_trial_jobs():
        params, value = values.get(job.trialJobId, ({}, None))
        if not params and job.hyperParameters:
            params = job.hyperParameters[0].parameters
        records.append(TrialRecord(job.trialJobId, job.status, dict(params), value))
    mode = _optimize_mode(experiment.get_experiment_profile().get("params", {}))
    return records, mode


def rank_trials(records: list[TrialRecord], mode: str = "minimize") -> list[TrialRecord]:
    """Trials with a finite final result, best first."""
    done = [r for r in records if r.value is not None and math.isfinite(r.value)]
    return sorted(done, key=lambda r: r.value if mode == "minimize" else -r.value)  # type: ignore[operator]


def format_table(ranked: list[TrialRecord], top: int = 10) -> str:
    """Plain-text table of the best trials."""
    lines = [f"{'rank':>4}  {'trial':<8} {'aug_k':>6} {'aug_n':>6}  {'objective':>12}  status"]
    for i, r in enumerate(ranked[:top], 1):
        note = "  (penalised)" if r.value == PENALTY else ""
        lines.append(
            f"{i:>4}  {r.trial_id:<8} {r.params.get('aug_k', '-')!s:>6} {r.params.get('aug_n', '-')!s:>6}  "
            f"{r.value:>12.6g}  {r.status}{note}"
        )
    return "\n".join(lines)


def write_best_policy(best: TrialRecord, path: Path, experiment_id: str) -> Path:
    """Write ``aug_k``/``aug_n`` of the best trial as a config file ``run.py --cfg`` stacks.

    Raises:
        KeyError: When the best trial's parameters lack ``aug_k`` or ``aug_n``.
    """
    missing = [k for k in ("aug_k", "aug_n") if k not in best.params]
    if missing:
        raise KeyError(f"best trial {best.trial_id} has no {missing} parameter (parameters: {best.params})")
    header = (
        f"# Best policy of NNI experiment {experiment_id} "
        f"(trial {best.trial_id}, objective {best.value:.6g}).\n"
        "# Step 3: python run.py --cfg configs/config_inpainting.yaml --cfg "
        f"{path}\n"
    )
    body = yaml.safe_dump(
        {"aug_k": int(best.params["aug_k"]), "aug_n": int(best.params["aug_n"])}, sort_keys=False
    )
    atomic_write_text(path, header + body)
    return path


def plot_scatter(records: list[TrialRecord], path: Path, title: str) -> Path:
    """Scatter of the objective over (k, n); penalised trials are grey crosses, the best a star."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in records if r.value is not None and r.value != PENALTY and "aug_k" in r.params]
    bad = [r for r in records if r.value == PENALTY and "aug_k" in r.params]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    if ok:
        points = ax.scatter(
            [r.params["aug_k"] for r in ok],
            [r.params["aug_n"] for r in ok],
            c=[r.value for r in ok],
            cmap="viridis_r",
            s=40,
            edgecolors="k",
            linewidths=0.4,
        )
        fig.colorbar(points, ax=ax, label="objective (lower is better)")
    if bad:
        ax.scatter(
            [r.params["aug_k"] for r in bad],
            [r.params["aug_n"] for r in bad],
            marker="x",
            c="grey",
            label=f"penalised ({PENALTY:g})",
        )
    ks = [r.params["aug_k"] for r in ok + bad]
    if ks:
        line = sorted({min(ks), max(ks)})
        ax.plot(line, [k / 2 for k in line], "r--", lw=0.8, label="n = k/2")
    ax.set_xlabel("k (requested superpixels, aug_k)")
    ax.set_ylabel("n (masked superpixels, aug_n)")
    ax.set_title(title)
    if ok or bad:
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    with atomic_path(path, keep_suffix=True) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path


def report(
    experiment_id: str,
    out: str | Path,
    port: int | None = None,
    experiments_dir: str = DEFAULT_EXPERIMENTS_DIR,
) -> dict[str, Any]:
    """Print the best policy and top 10, write the scatter PNG and ``best_policy.yaml``.

    Returns:
        ``{"best": TrialRecord, "ranked": [...], "plot": path, "policy": path, "counts": {status: n}}``.

    Raises:
        ValueError: When no trial has a final result yet.
    """
    records, mode = (
        read_rest(port, experiment_id) if port is not None else read_database(experiment_id, experiments_dir)
    )
    ranked = rank_trials(records, mode)
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1
    if not ranked:
        raise ValueError(f"experiment {experiment_id}: no trial has a final result yet (statuses {counts})")
    out = Path(out)
    best = ranked[0]
    plot = plot_scatter(records, out / "objective_scatter.png", f"NNI {experiment_id}: {len(ranked)} trials")
    policy = write_best_policy(best, out / "best_policy.yaml", experiment_id)
    print(f"experiment {experiment_id} ({mode}): trials {counts}")
    print(
        f"best policy: aug_k={best.params.get('aug_k')} aug_n={best.params.get('aug_n')} "
        f"objective={best.value:.6g} (trial {best.trial_id})"
    )
    print(format_table(ranked))
    print(f"plot: {plot}\noverride file: {policy}")
    return {"best": best, "ranked": ranked, "plot": plot, "policy": policy, "counts": counts}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("experiment_id")
    parser.add_argument(
        "--port", type=int, default=None, help="Ask the experiment running at this port (REST)."
    )
    parser.add_argument("--out", default=None, help="Output folder (default runs/policy_search_report/<id>).")
    parser.add_argument(
        "--experiments_dir", default=DEFAULT_EXPERIMENTS_DIR, help="NNI experimentWorkingDirectory."
    )
    args = parser.parse_args(argv)
    out = args.out or os.path.join("runs", "policy_search_report", args.experiment_id)
    return report(args.experiment_id, out, args.port, args.experiments_dir)


if __name__ == "__main__":
    sys.exit(run_entry_point("python -m policy_search.report", main))
