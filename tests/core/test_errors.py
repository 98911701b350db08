"""One error style for the entry points: a user error is one line on stderr and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import DEBUG_ENV, run_entry_point
from engine.run_dirs import remove_empty_run_dir

ROOT = Path(__file__).resolve().parents[2]


def _raise(err: BaseException):
    def main(argv: list[str]) -> int:
        raise err

    return main


def test_user_error_is_one_line_and_exit_2(capsys, monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    code = run_entry_point("prog", _raise(FileNotFoundError("data root /x not found")), [])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("prog: error: data root /x not found")
    assert "Traceback" not in err and "--debug" in err


@pytest.mark.parametrize("how", ["flag", "env"])
def test_traceback_on_request(capsys, monkeypatch, how):
    seen: list[list[str]] = []

    def main(argv: list[str]) -> int:
        seen.append(argv)
        raise ValueError("bad value 3 for key k: expected 0..2")

    monkeypatch.delenv(DEBUG_ENV, raising=False)
    if how == "env":
        monkeypatch.setenv(DEBUG_ENV, "1")
    code = run_entry_point("prog", main, ["--a", "1"] + (["--debug"] if how == "flag" else []))
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" in err and "ValueError: bad value 3" in err
    assert seen == [["--a", "1"]]  # --debug is not passed on to the entry point's own parser


def test_programming_errors_are_not_swallowed():
    with pytest.raises(RuntimeError, match="bug"):
        run_entry_point("prog", _raise(RuntimeError("bug")), [])


def test_exit_code_of_main():
    assert run_entry_point("prog", lambda argv: 3, []) == 3
    assert run_entry_point("prog", lambda argv: Path("out.nii.gz"), []) == 0
    assert run_entry_point("prog", lambda argv: True, []) == 0


def test_remove_empty_run_dir_keeps_any_file(tmp_path):
    empty = tmp_path / "version_0"
    (empty / "checkpoints").mkdir(parents=True)
    assert remove_empty_run_dir(empty) and not empty.exists()
    kept = tmp_path / "version_1"
    (kept / "checkpoints").mkdir(parents=True)
    (kept / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert not remove_empty_run_dir(kept) and (kept / "checkpoints" / "last.ckpt").read_bytes() == b"x"
    assert not remove_empty_run_dir(None) and not remove_empty_run_dir(tmp_path / "missing")


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != DEBUG_ENV} | (env or {})
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=full_env, timeout=300
    )


def test_run_py_user_error_one_line_no_empty_run_dir(tmp_path):
    """Regression: run.py printed a traceback for user errors and left an empty version_N behind."""
    args = ["run.py", "--cfg", "configs/demo.yaml", "--runs_dir", str(tmp_path), "--evaluate"]
    proc = _run(args)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert lines == [lines[0]] and lines[0].startswith("run.py: error: --evaluate needs --ckpt")
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("version_*")), "a failed start left a run directory"
    debug = _run(args + ["--debug"])
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_volumes_cli_user_error(tmp_path):
    proc = _run(
        ["-m", "datasets.volumes", "nifti", "--src", str(tmp_path / "nope"), "--out", str(tmp_path / "o"),
         "--modality", "CT"]
    )  # fmt: skip
    assert proc.returncode == 2
    assert "python -m datasets.volumes: error:" in proc.stderr and "Traceback" not in proc.stderr
    assert str(tmp_path / "nope") in proc.stderr
