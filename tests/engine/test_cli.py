"""run.py as a user runs it: fit + test outputs, strict config keys, evaluate-only, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import FrameworkCLI, translate_argv
from engine.run_dirs import resolve_resume
from run import main


def test_translate_argv_maps_short_flags():
    assert translate_argv(["--cfg", "a.yaml", "--cfg=b.yaml", "--seed", "3", "--x.y", "1"]) == [
        "--config",
        "a.yaml",
        "--config",
        "b.yaml",
        "--seed_everything",
        "3",
        "--x.y",
        "1",
    ]


def test_config_bases_expand_first_and_merge_deeply(tmp_path):
    from core.config_stack import expand_config_args, load_config_stack

    (tmp_path / "base.yaml").write_text("trainer: {max_epochs: 3, min_epochs: 2}\nname: base\n")
    (tmp_path / "kid.yaml").write_text("base: base.yaml\ntrainer: {max_epochs: 7}\n")
    merged = load_config_stack([tmp_path / "kid.yaml"])
    assert merged == {"trainer": {"max_epochs": 7, "min_epochs": 2}, "name": "base"}
    args = expand_config_args(["--config", str(tmp_path / "kid.yaml")])
    assert args[0::2] == ["--config", "--config"] and "base:" not in args[3]
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ValueError, match="cycle"):
        load_config_stack([tmp_path / "loop.yaml"])


def test_fit_then_test_writes_metrics_config_and_overlays(tiny, tmp_path):
    result = main(tiny(epochs=2))
    run_dir = Path(result["run_dir"])
    assert run_dir.parent == tmp_path / "runs" / "demo"
    summary = json.loads((run_dir / "test_summary.json").read_text())
    assert summary["num_images"] == 3  # every test image of the sample, once
    assert 0.0 <= summary["mean"]["dice"] <= 1.0
    rows = (run_dir / "test_per_image.csv").read_text().splitlines()
    assert rows[0].startswith("id,height,width,") and len(rows) == 4
    assert "dice" in rows[0] and "hd95" in rows[0]
    assert (run_dir / "config.yaml").is_file()  # the fully resolved config
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert sorted(p.name for p in (run_dir / "overlays").iterdir()) == ["epoch_000.png", "epoch_001.png"]
    assert result["test"]["dice"] == pytest.approx(summary["mean"]["dice"])


def test_same_seed_gives_same_numbers_on_cpu(tiny):
    first = main(tiny("--trainer.deterministic", "true", "--seed", "7"))
    second = main(tiny("--trainer.deterministic", "true", "--seed", "7"))
    assert first["test"] == second["test"]


def test_unknown_key_fails_naming_it_and_the_closest_key(tiny):
    with pytest.raises(
        ValueError,
        match=r"unknown key 'trainer.max_epoch' \(command line\): did you mean 'trainer.max_epochs'\?",
    ):
        FrameworkCLI(args=translate_argv(tiny("--trainer.max_epoch", "1")))


def test_unknown_model_option_fails(tiny):
    with pytest.raises(ValueError, match=r"unknown key 'lossx' \(command line\): did you mean 'loss'\?"):
        FrameworkCLI(args=translate_argv(tiny("--model.lossx", "dice")))


def test_yaml_typo_names_the_file_the_key_and_the_closest_key(tmp_path):
    """Regression: a typo in a YAML key named neither the file nor the closest key."""
    repo = Path(__file__).resolve().parents[2]
    text = (repo / "configs" / "demo.yaml").read_text().replace("batch_size: 4", "batch_sise: 4")
    config = tmp_path / "typo.yaml"
    config.write_text(
        text.replace("base: base_segmentation.yaml", f"base: {repo / 'configs' / 'base_segmentation.yaml'}")
    )
    expected = rf"unknown key 'data.init_args.batch_sise' \({config}\): did you mean 'batch_size'\?$"
    with pytest.raises(ValueError, match=expected):
        FrameworkCLI(args=translate_argv(["--cfg", str(config), "--runs_dir", str(tmp_path)]))


def test_wrong_type_fails_naming_the_key_the_value_and_the_type(tiny):
    expected = r"bad value 'four' for key 'data.init_args.batch_size' \(command line\): expected int or None"
    with pytest.raises(ValueError, match=expected):
        FrameworkCLI(args=translate_argv(tiny("--data.batch_size", "four")))


def test_missing_required_root_fails_before_work(tmp_path):
    repo = Path(__file__).resolve().parents[2]
    expected = r"missing required key\(s\) root in section data: datasets\.datamodule\.\w+.*--data\.root"
    with pytest.raises(ValueError, match=expected):
        FrameworkCLI(
            args=translate_argv(["--cfg", str(repo / "configs" / "folder.yaml"), "--runs_dir", str(tmp_path)])
        )
    assert not (tmp_path / "folder").exists()


def test_missing_dataset_root_names_the_path(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match="does_not_exist"):
        main(tiny("--data.root", str(tmp_path / "does_not_exist")))


def test_fast_dev_run_writes_no_checkpoint_and_nothing_in_the_working_dir(tiny, tmp_path, monkeypatch):
    # Regression: with fast_dev_run (no logger) Lightning wrote last.ckpt to ./checkpoints/ of the
    # working directory at train end, one more version per run.
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = main(tiny("--trainer.fast_dev_run", "1"))
    assert result["best_ckpt"] is None and result["test"]["dice"] == result["test"]["dice"]
    assert list(work.iterdir()) == []
    assert list(tmp_path.rglob("*.ckpt")) == []


def test_evaluate_only_tests_the_given_checkpoint(tiny):
    trained = main(tiny())
    ckpt = Path(trained["run_dir"]) / "checkpoints" / "last.ckpt"
    evaluated = main(tiny("--evaluate", "--ckpt", str(ckpt)))  # a bare flag, as in run.py's docstring
    assert evaluated["best_ckpt"] == str(ckpt)
    assert evaluated["test"]["dice"] == pytest.approx(trained["test"]["dice"], abs=1e-6)
    again = main(tiny("--evaluate", "true", "--ckpt", str(ckpt)))
    assert again["test"]["dice"] == pytest.approx(evaluated["test"]["dice"], abs=1e-6)
    # the resolved config saved with the run is itself a valid --cfg (it holds evaluate: false)
    saved = Path(trained["run_dir"]) / "config.yaml"
    from_saved = main(["--cfg", str(saved), "--evaluate", "--ckpt", str(ckpt)])
    assert from_saved["test"]["dice"] == pytest.approx(evaluated["test"]["dice"], abs=1e-6)


def test_evaluate_without_checkpoint_is_an_error(tiny, tmp_path):
    with pytest.raises(ValueError, match="--ckpt"):
        main(tiny("--evaluate", "true"))
    with pytest.raises(ValueError, match="--ckpt"):
        main(tiny("--evaluate"))
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        main(tiny("--evaluate", "true", "--ckpt", str(tmp_path / "nope.ckpt")))


def test_resolve_resume_errors_and_paths(tmp_path):
    assert resolve_resume(None, tmp_path) == (None, None)
    with pytest.raises(FileNotFoundError, match="last.ckpt"):
        resolve_resume("last", tmp_path / "exp")
    ckpt = tmp_path / "exp" / "version_3" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    assert resolve_resume("last", tmp_path / "exp") == (str(ckpt), "version_3")
    assert resolve_resume(str(ckpt.parent.parent), tmp_path / "exp") == (str(ckpt), "version_3")


def test_knowledge_distillation_from_a_teacher_checkpoint(tiny):
    teacher = main(tiny())
    ckpt = Path(teacher["run_dir"]) / "checkpoints" / "last.ckpt"
    student = main(
        tiny("--model.teacher_checkpoint", str(ckpt), "--model.model_kwargs", '{"base_channel": 2}')
    )
    header = (Path(student["run_dir"]) / "metrics.csv").read_text().splitlines()[0]
    assert "train/kd_loss" in header


def test_missing_teacher_checkpoint_is_an_error(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match="teacher.ckpt"):
        main(tiny("--model.teacher_checkpoint", str(tmp_path / "teacher.ckpt")))


def test_bf16_mixed_precision_runs_on_cpu(tiny):
    result = main(tiny("--trainer.precision", "bf16-mixed"))
    assert 0.0 <= result["test"]["dice"] <= 1.0


def test_wandb_logger_is_offline_by_default(tiny, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    main(tiny("--wandb.enabled", "true"))
    assert list((tmp_path / "runs" / "wandb").glob("offline-run-*")), "expected an offline W&B run directory"


def test_policy_names_need_a_superpixel_section_and_n_masked(tiny):
    with pytest.raises(ValueError, match="superpixels"):
        FrameworkCLI(args=translate_argv(tiny("--aug_k", "100")), instantiate=False)
    with pytest.raises(ValueError, match="n_masked"):
        FrameworkCLI(args=translate_argv(tiny("--aug_n", "10")), instantiate=False)


def test_aug_k_sets_the_superpixel_count(tiny):
    args = tiny("--data.superpixels", '{"source": "cpu", "params": {"n_segments": 512, "compactness": 5}}')
    cli = FrameworkCLI(args=translate_argv([*args, "--aug_k", "100"]), instantiate=False)
    assert cli.config.data.init_args.superpixels.params == {"n_segments": 100, "compactness": 5}
