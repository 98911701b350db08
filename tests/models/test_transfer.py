"""Weight transfer into downstream segmentation: every checkpoint kind, channel adaptation, errors, e2e."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from models.networks.registry import create_model
from models.segmentation_module import SegmentationModule
from models.transfer import load_pretrained
from pretext.byol import BYOL

REPO = Path(__file__).resolve().parents[2]
ENC = {"encoder_name": "resnet18"}


def encoder_unet(in_channels: int = 1, num_classes: int = 5, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return create_model("encoder_unet", in_channels=in_channels, num_classes=num_classes, **{**ENC, **kw})


def downstream(
    path: Path | None, in_channels: int = 1, parts: str = "encoder", seed: int = 123
) -> SegmentationModule:
    torch.manual_seed(seed)  # a different random init than every source
    return SegmentationModule(
        model="encoder_unet",
        model_kwargs=ENC,
        in_channels=in_channels,
        num_classes=5,
        pretrained=None if path is None else str(path),
        pretrained_parts=parts,
    )


def printed_loaded(capsys) -> int:
    match = re.search(r"loaded (\d+) tensors", capsys.readouterr().out)
    assert match, "load_pretrained must print its counts"
    return int(match.group(1))


def assert_same(received: dict, expected: dict) -> None:
    assert received.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(received[key], value), key


def test_from_segmentation_module_checkpoint(tmp_path, capsys):
    source = downstream(None, seed=5)
    path = tmp_path / "seg.ckpt"
    torch.save({"state_dict": source.state_dict(), "hyper_parameters": {"model": "encoder_unet"}}, path)
    target = downstream(path)
    n_encoder = len(target.net.encoder.state_dict())
    assert printed_loaded(capsys) == n_encoder == 120
    assert_same(target.net.encoder.state_dict(), source.net.encoder.state_dict())
    # the decoder keeps its own random init with parts=encoder ...
    assert not torch.equal(
        target.net.decoder.state_dict()[next(iter(target.net.decoder.state_dict()))],
        source.net.decoder.state_dict()[next(iter(source.net.decoder.state_dict()))],
    )
    # ... and is loaded with encoder+decoder
    both = downstream(path, parts="encoder+decoder")
    assert_same(both.net.decoder.state_dict(), source.net.decoder.state_dict())
    assert_same(both.net.encoder.state_dict(), source.net.encoder.state_dict())


def test_from_inpainting_checkpoint_adapts_rgb_to_grey(tmp_path, capsys):
    mim = encoder_unet(in_channels=3, num_classes=3, seed=1)  # inpainting head: 3 output channels
    path = tmp_path / "mim.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in mim.state_dict().items()}, "epoch": 3}, path)
    target = downstream(path, in_channels=1)
    got, src = target.net.encoder.state_dict(), mim.encoder.state_dict()
    assert printed_loaded(capsys) == len(got)
    torch.testing.assert_close(got["conv1.weight"], src["conv1.weight"].sum(dim=1, keepdim=True))
    assert_same(
        {k: v for k, v in got.items() if k != "conv1.weight"},
        {k: v for k, v in src.items() if k != "conv1.weight"},
    )
    with pytest.raises(ValueError, match="incompatible shapes"):  # the 3-channel head cannot fill 5 classes
        downstream(path, parts="all")


def test_grey_to_rgb_first_conv_repeats_over_three(tmp_path, capsys):
    grey = encoder_unet(in_channels=1, seed=2)
    path = tmp_path / "grey.pt"
    torch.save(grey.state_dict(), path)  # plain whole-network state dict: "encoder.*"
    target = downstream(path, in_channels=3)
    got, src = target.net.encoder.state_dict(), grey.encoder.state_dict()
    assert printed_loaded(capsys) == len(got)
    torch.testing.assert_close(got["conv1.weight"], src["conv1.weight"].repeat(1, 3, 1, 1) / 3.0)
    assert torch.equal(got["layer4.1.bn2.running_var"], src["layer4.1.bn2.running_var"])


def test_encoder_only_state_dict_with_classifier_head(tmp_path, capsys):
    net = encoder_unet(in_channels=3, seed=3)
    state = dict(net.encoder.state_dict())  # ImageNet-like: "conv1.weight", plus an unused fc
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    path = tmp_path / "imagenet_resnet18.pth"
    torch.save(state, path)
    target = downstream(path, in_channels=3)
    assert printed_loaded(capsys) == len(target.net.encoder.state_dict())
    assert_same(target.net.encoder.state_dict(), net.encoder.state_dict())


@pytest.fixture()
def byol_ckpt(tmp_path):
    torch.manual_seed(4)
    model = BYOL(
        in_channels=1, encoder_name="resnet18", proj_hidden_dim=16, proj_output_dim=8, pred_hidden_dim=16
    )
    with torch.no_grad():  # make the two branches differ, as after training
        for p in model.online_net.parameters():
            p.add_(torch.randn_like(p))
    path = tmp_path / "byol.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return model, path


def test_byol_checkpoint_transfers_target_encoder_by_default(byol_ckpt, capsys):
    model, path = byol_ckpt
    target = downstream(path)
    out = capsys.readouterr().out
    assert "target branch" in out
    assert int(re.search(r"loaded (\d+) tensors", out).group(1)) == len(target.net.encoder.state_dict())
    assert_same(target.net.encoder.state_dict(), model.target_net.encoder.state_dict())
    online = encoder_unet(seed=9)
    counts = load_pretrained(online, path, source="online")
    assert counts["loaded"] == len(online.encoder.state_dict()) and counts["missing"] == 0
    assert_same(online.encoder.state_dict(), model.online_net.encoder.state_dict())
    with pytest.raises(ValueError, match="source must be one of"):
        load_pretrained(online, path, source="momentum")
    with pytest.raises(ValueError, match="not in the checkpoint"):  # BYOL trains no decoder
        downstream(path, parts="encoder+decoder")


def test_missing_file_raises():
    with pytest.raises(FileNotFoundError, match="no_such.ckpt"):
        downstream(Path("no_such.ckpt"))


def test_unrelated_model_checkpoint_fails_naming_expected_keys(tmp_path):
    torch.manual_seed(0)
    unet = create_model("unet", in_channels=1, num_classes=5, base_channel=4)
    path = tmp_path / "unet.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in unet.state_dict().items()}}, path)
    with pytest.raises(ValueError, match=r"Expected keys like 'net\.encoder\.conv1\.weight'"):
        downstream(path)


def test_other_encoder_variant_fails(tmp_path):
    for name, match in (("resnet34", "tensors the network lacks"), ("resnet50", "incompatible shapes")):
        other = encoder_unet(encoder_name=name)
        path = tmp_path / f"{name}.pt"
        torch.save(other.state_dict(), path)
        with pytest.raises(ValueError, match=match):
            downstream(path)


@pytest.mark.slow  # two real runs (resnet18 BYOL + fine-tune): ~20 s alone, far more on a busy machine
def test_byol_then_downstream_end_to_end(tmp_path, capsys):
    from run import main

    common = [
        "--runs_dir", str(tmp_path),
        "--data.image_size", "32",
        "--data.batch_size", "4",
        "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
    ]  # fmt: skip
    pre = main(
        [
            "--cfg",
            str(REPO / "configs" / "byol_sample.yaml"),
            *common,
            "--model.crop_size",
            "32",
            "--model.proj_hidden_dim",
            "32",
            "--model.pred_hidden_dim",
            "32",
        ]
    )
    assert pre["test"] == {} and Path(pre["best_ckpt"]).is_file()
    ckpt = torch.load(pre["best_ckpt"], map_location="cpu", weights_only=False)
    assert any(k.startswith("target_net.encoder.") for k in ckpt["state_dict"])
    capsys.readouterr()
    down = main(
        [
            "--cfg",
            str(REPO / "configs" / "downstream_sample.yaml"),
            *common,
            "--model.pretrained",
            pre["best_ckpt"],
            "--model.hd95_in_test",
            "false",
            "--trainer.callbacks",
            "[]",  # no overlay images: seconds matter here
        ]
    )
    assert "loaded 120 tensors into encoder" in capsys.readouterr().out
    assert 0.0 <= down["test"]["dice"] <= 1.0
