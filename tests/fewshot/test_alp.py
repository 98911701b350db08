"""ALP prototypes and scores (hand values, empty cases), the encoder, and the loss going down."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.fewshot.alp import (
    alp_logits,
    class_prototypes,
    global_prototype,
    local_prototypes,
    prototype_scores,
)
from models.fewshot.module import ALPNetModule, alignment_loss
from models.fewshot.network import FewShotEncoder


def _cell_features() -> torch.Tensor:
    # [2, 8, 8]: cell (i, j) of the 4x4 grid is constant (i*2+j, 1).
    f = torch.zeros(2, 8, 8)
    for i in range(2):
        for j in range(2):
            f[0, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4] = i * 2 + j
    f[1] = 1.0
    return f


def test_local_prototypes_keep_only_covered_cells():
    f, mask = _cell_features(), torch.zeros(8, 8)
    mask[:, :4] = 1.0  # left column of cells fully covered
    mask[0, 4] = 1.0  # 1/16 of the top-right cell: below 0.95
    protos = local_prototypes(f, mask, window=4, threshold=0.95)
    assert protos.tolist() == [[0.0, 1.0], [2.0, 1.0]]
    assert local_prototypes(f, mask, window=16).shape == (0, 2)  # map smaller than the window


def test_global_prototype_hand_value():
    f, mask = _cell_features(), torch.zeros(8, 8)
    mask[0, 0] = mask[0, 4] = 1.0  # values 0 and 1
    torch.testing.assert_close(global_prototype(f, mask), torch.tensor([[0.5, 1.0]]), atol=1e-4, rtol=0)


def test_class_prototypes_fallback_and_empty_mask():
    f, mask = _cell_features(), torch.zeros(8, 8)
    mask[1:3, 1:3] = 1.0  # no cell passes the threshold
    protos = class_prototypes(f, mask, window=4, with_global=False)
    assert protos.shape == (1, 2)  # explicit fallback to the global masked average
    torch.testing.assert_close(protos, global_prototype(f, mask))
    full = torch.ones(8, 8)
    assert class_prototypes(f, full, window=4, with_global=True).shape == (5, 2)  # 4 local + global
    with pytest.raises(ValueError, match="class mask is empty"):
        class_prototypes(f, torch.zeros(8, 8), window=4)


def test_prototype_scores_single_prototype_is_scaled_cosine():
    q = torch.randn(2, 4, 3, 3)
    p = torch.randn(1, 4)
    expected = 20.0 * F.cosine_similarity(q, p[0][None, :, None, None], dim=1)
    torch.testing.assert_close(prototype_scores(q, p), expected, atol=1e-4, rtol=1e-4)
    # Two opposite prototypes: s = (a, -a), softmax weights give a * tanh(a).
    two = prototype_scores(q, torch.cat([p, -p]))
    torch.testing.assert_close(two, expected * torch.tanh(expected), atol=1e-4, rtol=1e-4)


def test_alp_logits_shapes_with_tiny_foreground():
    s, q = torch.randn(8, 8, 8), torch.randn(3, 8, 8, 8)
    mask = torch.zeros(64, 64)
    mask[10:14, 10:14] = 1  # no local foreground prototype: the global one carries it
    out = alp_logits(s, mask, q, window=2)
    assert out.shape == (3, 2, 8, 8) and torch.isfinite(out).all()


def test_encoder_shapes_and_errors(tmp_path):
    assert FewShotEncoder("tiny", feature_dim=32)(torch.randn(2, 3, 64, 48)).shape == (2, 32, 8, 6)
    enc = FewShotEncoder("resnet18", feature_dim=16)
    assert enc(torch.randn(1, 3, 64, 64)).shape == (1, 16, 8, 8)
    with pytest.raises(ValueError, match="unknown backbone 'vgg'"):
        FewShotEncoder("vgg")
    with pytest.raises(FileNotFoundError, match="do not exist"):
        FewShotEncoder("resnet50", weights_path=str(tmp_path / "coco.pth"))


def test_resnet18_local_weights_are_loaded(tmp_path):
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    with torch.no_grad():
        net.conv1.weight.fill_(0.25)
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    enc = FewShotEncoder("resnet18", weights_path=str(tmp_path / "r18.pth"))
    assert torch.all(enc.body[0].weight == 0.25)


def test_alignment_loss_skips_empty_prediction():
    s, q = torch.randn(1, 8, 4, 4, requires_grad=True), torch.randn(1, 8, 4, 4)
    logits = torch.zeros(1, 2, 32, 32, requires_grad=True)
    logits.data[:, 0] = 1.0  # all background predicted
    loss = alignment_loss(s, q, logits, torch.zeros(1, 32, 32, dtype=torch.long), 2, 0.95, 20.0)
    assert loss.item() == 0.0 and loss.requires_grad


def test_module_rejects_multiclass():
    with pytest.raises(ValueError, match="num_classes=3"):
        ALPNetModule(backbone="tiny", num_classes=3)


def test_loss_goes_down_on_a_fixed_episode():
    torch.manual_seed(0)
    module = ALPNetModule(backbone="tiny", feature_dim=32, train_window=2, optim={"lr": 0.05})
    img = torch.rand(1, 1, 32, 32).repeat(1, 3, 1, 1)
    mask = torch.zeros(1, 32, 32, dtype=torch.long)
    mask[:, 8:20, 10:22] = 1
    img[:, :, 8:20, 10:22] += 0.5
    batch = {
        "support_image": img,
        "support_mask": mask,
        "query_image": img.flip(-1),
        "query_mask": mask.flip(-1),
    }
    module.log = lambda *a, **k: None  # no trainer attached
    opt = torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(20):
        loss = module.training_step(batch, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
