from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pretext.colorization import ColorizationProbe
from pretext.inpainting import SuperpixelInpainting
from pretext.jigsaw import JigsawProbe
from pretext.rotation import RotationProbe


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # Tiny CPU models: one intra-op thread avoids oversubscription on small, shared machines.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def smooth_images(batch: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, channels, 4, 4, generator=g)
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False) * 2 - 1


def grid_labels(batch: int, size: int, cell: int) -> torch.Tensor:
    rows = torch.arange(size) // cell
    return (rows[:, None] * (size // cell) + rows[None, :]).expand(batch, size, size).clone()


def batch_of(images: torch.Tensor, with_superpixels: bool = False) -> dict:
    out = {
        "image": images,
        "index": torch.arange(images.shape[0]),
        "id": [str(i) for i in range(len(images))],
    }
    if with_superpixels:
        out["superpixels"] = grid_labels(images.shape[0], images.shape[-1], 8)
    return out


@pytest.fixture(scope="module")
def mim_checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    module = SuperpixelInpainting(in_channels=3, encoder_name="resnet18", n_masked=4)
    path = tmp_path_factory.mktemp("mim") / "mim.ckpt"
    torch.save({"state_dict": module.state_dict()}, path)
    return path, {k: v.clone() for k, v in module.net.encoder.state_dict().items()}


PROBES = {
    "rotation": lambda **kw: RotationProbe(encoder_name="resnet18", **kw),
    "jigsaw": lambda **kw: JigsawProbe(encoder_name="resnet18", tile_features=64, **kw),
    "colorization": lambda **kw: ColorizationProbe(encoder_name="resnet18", n_masked=4, **kw),
}


@pytest.mark.parametrize("name", sorted(PROBES))
def test_probe_loads_mim_encoder_frozen(name, mim_checkpoint):
    path, encoder_state = mim_checkpoint
    probe = PROBES[name](in_channels=3, encoder_checkpoint=str(path), freeze_encoder=True, optim={"lr": 1e-2})
    for key, value in probe.net.encoder.state_dict().items():
        assert torch.equal(value, encoder_state[key]), key
    assert not any(p.requires_grad for p in probe.net.encoder.parameters())
    trainable = [p for p in probe.parameters() if p.requires_grad]
    assert trainable
    probe.train()
    assert not probe.net.encoder.training  # BatchNorm statistics stay fixed
    # one step moves the head but not the encoder
    batch = batch_of(smooth_images(2, 3, 32), with_superpixels=True)
    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    before = [p.clone() for p in trainable]
    loss, _ = probe._step(batch, "train")
    optimizer.zero_grad()
    loss.backward()
    assert all(p.grad is None for p in probe.net.encoder.parameters())
    optimizer.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, trainable, strict=True))
    for key, value in probe.net.encoder.state_dict().items():
        assert torch.equal(value, encoder_state[key]), key


def test_probe_on_grey_images_adapts_the_rgb_stem(mim_checkpoint):
    path, encoder_state = mim_checkpoint
    probe = RotationProbe(in_channels=1, encoder_name="resnet18", encoder_checkpoint=str(path))
    assert torch.allclose(
        probe.net.encoder.state_dict()["conv1.weight"], encoder_state["conv1.weight"].sum(1, keepdim=True)
    )


def test_probe_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        RotationProbe(encoder_name="resnet18", encoder_checkpoint=str(tmp_path / "missing.ckpt"))
    torch.save({"state_dict": {"other.weight": torch.zeros(2)}}, tmp_path / "bad.ckpt")
    with pytest.raises(ValueError, match="no tensor matches"):
        RotationProbe(encoder_name="resnet18", encoder_checkpoint=str(tmp_path / "bad.ckpt"))


@pytest.mark.parametrize("name", sorted(PROBES))
def test_probe_loss_goes_down_in_20_steps(name):
    torch.manual_seed(0)
    probe = PROBES[name](in_channels=3, freeze_encoder=False)
    batch = batch_of(smooth_images(4, 3, 32), with_superpixels=True)
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-3)
    losses = []
    for _ in range(20):
        loss, metrics = probe._step(batch, "train")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_probe_random_choices_are_seeded():
    probe = RotationProbe(encoder_name="resnet18", in_channels=1, seed=3)
    batch = batch_of(torch.zeros(16, 1, 8, 8))
    a = torch.randint(0, 4, (16,), generator=probe.generator(batch, "train"))
    b = torch.randint(0, 4, (16,), generator=probe.generator(batch, "train"))
    c = torch.randint(
        0,
        4,
        (16,),
        generator=RotationProbe(encoder_name="resnet18", in_channels=1, seed=4).generator(batch, "train"),
    )
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_colorization_runs_on_grey_images():
    probe = ColorizationProbe(in_channels=1, encoder_name="resnet18", n_masked=4, freeze_encoder=False)
    loss, metrics = probe._step(batch_of(smooth_images(2, 1, 32), with_superpixels=True), "train")
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert metrics["masked_fraction"].item() == pytest.approx(4 * 64 / 1024)
