"""Tests for every registered network (timm/smp style: parametrised over the registry)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.networks.blocks import crop_to, pad_to_multiple
from models.networks.ducknet import DUCKBlock
from models.networks.registry import create_model, list_models

# small settings so that the whole file stays fast on a 2-core CPU
SMALL_KWARGS: dict[str, dict] = {
    "unet": {"base_channel": 8},
    "unetpp": {"base_channel": 8, "deep_supervision": True},
    "resunet": {"base_channel": 8},
    "resunetpp": {"base_channel": 8},
    "ducknet": {"base_channel": 4},
    "encoder_unet": {"encoder_name": "resnet18", "decoder_channels": (16, 16, 16, 16, 16)},
}

# (registry name, kwargs, published parameter count)
PUBLISHED = [
    ("unet", {"base_channel": 32}, 8.63e6),
    ("unetpp", {"base_channel": 32, "deep_supervision": True}, 8.53e6),
    ("resunet", {"base_channel": 32}, 2.06e6),
    ("resunetpp", {"base_channel": 32}, 3.93e6),
    ("ducknet", {"base_channel": 17}, 40.1e6),
    ("ducknet", {"base_channel": 34}, 160.28e6),
    ("encoder_unet", {"encoder_name": "resnet18"}, 14.33e6),
]


def build(name: str, in_channels: int = 3, num_classes: int = 2, seed: int = 0, **overrides) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(name, in_channels, num_classes, **{**SMALL_KWARGS[name], **overrides})


def as_list(out: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
    return out if isinstance(out, list) else [out]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_lists_all_networks():
    assert set(SMALL_KWARGS) <= set(list_models())


def test_small_settings_cover_every_registered_model():
    # a new network must get small test settings, otherwise it would silently go untested
    assert set(list_models()) == set(SMALL_KWARGS)


def test_unknown_name_suggests_close_match():
    with pytest.raises(KeyError, match=r"unknown network 'unett': did you mean 'unet'\? Valid: .*ducknet"):
        create_model("unett")


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    # the tensors are tiny: with 2 threads on a shared 2-core machine, thread synchronisation costs
    # more than the convolutions themselves
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("num_classes", [1, 2, 4])
def test_forward_backward_every_parameter_gets_finite_gradient(name, in_channels, num_classes):
    model = build(name, in_channels, num_classes).train()
    outs = as_list(model(torch.randn(1, in_channels, 64, 64)))
    for out in outs:
        assert out.shape == (1, num_classes, 64, 64)
        assert torch.isfinite(out).all()
    sum((o**2).mean() for o in outs).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == []
    not_finite = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not_finite == []


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("in_channels", [1, 3])
def test_odd_size_is_padded_and_cropped(name, in_channels):
    model = build(name, in_channels, 3)
    x = torch.randn(1, in_channels, 70, 90)
    for out in as_list(model.train()(x)):
        assert out.shape == (1, 3, 70, 90)
    with torch.no_grad():
        out = model.eval()(x)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 3, 70, 90)


@pytest.mark.parametrize("name", list_models())
def test_eval_output_is_single_tensor(name):
    model = build(name, 3, 2).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 2, 64, 64)


@pytest.mark.parametrize("name", list_models())
def test_state_dict_round_trip(name, tmp_path):
    x = torch.randn(1, 3, 64, 64)
    source = build(name, seed=0).eval()
    target = build(name, seed=1).eval()
    with torch.no_grad():
        assert not torch.equal(source(x), target(x))  # else the round trip proves nothing
        torch.save(source.state_dict(), tmp_path / "weights.pt")
        target.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
        assert torch.equal(source(x), target(x))


@pytest.mark.parametrize("name,kwargs,published", PUBLISHED, ids=lambda v: str(v))
def test_parameter_count_matches_publication(name, kwargs, published):
    # meta tensors: no memory, no forward pass (DUCK-Net-34 alone would take 640 MB)
    with torch.device("meta"):
        model = create_model(name, in_channels=3, num_classes=2, **kwargs)
    assert abs(count_params(model) - published) / published < 0.02


def test_unet_parameter_count_equals_hand_formula():
    def conv_bn(c_in, c_out):
        return 9 * c_in * c_out + 2 * c_out

    def double(c_in, c_out):
        return conv_bn(c_in, c_out) + conv_bn(c_out, c_out)

    b, c_in, k = 8, 1, 3
    w = [b * 2**i for i in range(5)]
    expected = double(c_in, w[0]) + sum(double(w[i - 1], w[i]) for i in range(1, 5))
    # each decoder level: transposed 3x3 conv (+bias, +BN) then a double conv on the concatenation
    expected += sum(9 * w[i + 1] * w[i] + 3 * w[i] + double(2 * w[i], w[i]) for i in range(4))
    expected += b * k + k  # 1x1 head with bias
    assert count_params(create_model("unet", c_in, k, base_channel=b)) == expected


def test_unetpp_deep_supervision_returns_main_first():
    model = build("unetpp", 3, 2)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected_main = model.eval()(x)
        model.train()
        for module in model.modules():  # batch statistics would make train and eval outputs differ
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        outs = model(x)
    assert isinstance(outs, list) and len(outs) == 4
    assert torch.allclose(outs[0], expected_main)
    assert not torch.allclose(outs[1], outs[0])


def test_unetpp_without_deep_supervision_returns_tensor_in_training():
    model = build("unetpp", deep_supervision=False).train()
    assert isinstance(model(torch.randn(1, 3, 32, 32)), torch.Tensor)


def test_duck_block_has_six_branches_with_1_2_3_residual_blocks():
    block = DUCKBlock(4, 6)
    assert len(block.branches) == 6
    assert [len(block.branches[i]) for i in (0, 1, 2, 3, 4)] == [3, 2, 1, 2, 3]
    separated = [m.kernel_size for m in block.branches[5].modules() if isinstance(m, nn.Conv2d)]
    assert separated == [(1, 7), (7, 1)]
    assert block(torch.randn(2, 4, 9, 11)).shape == (2, 6, 9, 11)


def test_pad_to_multiple_and_crop():
    x = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(1, 2, 3, 5)
    padded, size = pad_to_multiple(x, 4)
    assert padded.shape == (1, 2, 4, 8) and size == (3, 5)
    assert torch.equal(padded[:, :, 3], padded[:, :, 2])  # replicated last row
    assert torch.equal(crop_to(padded, size), x)
    same, _ = pad_to_multiple(padded, 4)
    assert same is padded


def test_encoder_unet_exposes_transfer_prefixes():
    model = build("encoder_unet", 3, 3)
    prefixes = {key.split(".")[0] for key in model.state_dict()}
    assert prefixes == {"encoder", "decoder", "segmentation_head"}


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "encoder_prefix"])
def test_encoder_unet_loads_local_weights(tmp_path, wrap):
    source = build("encoder_unet", seed=0)
    state = source.encoder.state_dict()
    if wrap == "state_dict":
        state = {"state_dict": state, "epoch": 3}
    elif wrap == "encoder_prefix":
        state = {f"encoder.{k}": v for k, v in state.items()}
    path = tmp_path / "encoder.pt"
    torch.save(state, path)
    loaded = build("encoder_unet", seed=1, encoder_weights=str(path))
    random = build("encoder_unet", seed=1)
    expected = source.encoder.state_dict()
    assert not torch.equal(random.encoder.conv1.weight, expected["conv1.weight"])
    for key, value in loaded.encoder.state_dict().items():
        assert torch.equal(value, expected[key]), key


@pytest.mark.parametrize("weights", ["imagenet", "does/not/exist.pt"])
def test_encoder_unet_rejects_missing_file(weights):
    with pytest.raises(FileNotFoundError, match="local file"):
        build("encoder_unet", encoder_weights=weights)


def test_encoder_unet_reports_key_mismatch(tmp_path):
    state = build("encoder_unet").encoder.state_dict()
    state.pop("conv1.weight")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(
        ValueError, match=r"missing keys \['conv1.weight'\].*unexpected keys \['extra.weight'\]"
    ):
        build("encoder_unet", encoder_weights=str(tmp_path / "bad.pt"))


def test_encoder_unet_reports_shape_mismatch(tmp_path):
    torch.save(build("encoder_unet", in_channels=3).encoder.state_dict(), tmp_path / "rgb.pt")
    with pytest.raises(ValueError, match="conv1.weight"):
        build("encoder_unet", in_channels=1, encoder_weights=str(tmp_path / "rgb.pt"))


@pytest.mark.slow
def test_encoder_unet_timm_encoder_builds_and_runs():
    model = build("encoder_unet", 3, 3, encoder_name="tu-tf_efficientnetv2_s").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 70, 90)).shape == (1, 3, 70, 90)
