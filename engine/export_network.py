"""``--export onnx|torchscript``: a segmentation checkpoint as a graph other runtimes can execute.

The exported graph is the network plus its output activation: input ``image`` ``[N, C, H, W]``
float32, already preprocessed as at training (resized or windowed to the checkpoint's ``image_size``,
values ``(x - 0.5) / 0.5`` in ``[-1, 1]``; see :mod:`datasets.preprocess`), output ``probabilities``
``[N, max(classes, 2), H, W]`` (softmax, or the two-channel sigmoid of a binary head). The batch is
dynamic, ``H x W`` is the training size. What preprocessing needs travels with the file: ONNX
metadata properties / a TorchScript extra file ``spseg.json`` (task, classes, channels, image size,
normalisation, the ``inference`` block).

Every export is verified before it is kept: the file is run on a seeded input and compared with
PyTorch (TorchScript always; ONNX when ``onnxruntime`` is installed, else the result says it was not).
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from datasets.atomic_io import atomic_path
from datasets.preprocess import NORM_MEAN, NORM_STD
from engine.predict.checkpoints import PredictionModel

log = logging.getLogger(__name__)

GRAPH_SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
ATOL = 1e-4


class ProbabilityNet(nn.Module):
    """A segmentation task module as ``image -> class probabilities`` (what the export holds)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, image: Tensor) -> Tensor:
        """Class probabilities.

        Shape:
            ``[N, C, H, W]`` -> ``[N, max(classes, 2), H, W]``.
        """
        return self.module.predict_log_probs(image).exp()


def export_metadata(model: PredictionModel) -> dict[str, str]:
    """What a runtime needs to preprocess inputs and read outputs, as strings (header-safe)."""
    module = model.module
    return {
        "task": f"{type(module).__module__}.{type(module).__qualname__}",
        "source": model.path,
        "in_channels": str(model.in_channels),
        "num_classes": str(model.num_classes),
        "image_size": json.dumps(list(model.image_size)),
        "normalisation": json.dumps({"mean": NORM_MEAN, "std": NORM_STD, "input_range": [0, 1]}),
        "inference": json.dumps(asdict(model.inference)),
        "class_names": json.dumps(model.class_names),
        "output": "probabilities [N, C, H, W]",
    }


def example_input(model: PredictionModel, batch: int = 2, seed: int = 0) -> Tensor:
    """A seeded input in the network's range ``[-1, 1]`` at the training size."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, model.in_channels, *model.image_size, generator=generator) * 2 - 1


def _write_onnx(net: nn.Module, x: Tensor, tmp: Path, metadata: dict[str, str]) -> None:
    import onnx

    axes = {"image": {0: "batch"}, "probabilities": {0: "batch"}}
    torch.onnx.export(
        net, (x,), str(tmp), input_names=["image"], output_names=["probabilities"],
        dynamic_axes=axes, opset_version=17, dynamo=False,
    )  # fmt: skip
    graph = onnx.load(str(tmp))
    for key, value in metadata.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(tmp))


def _run_onnx(path: Path, x: Tensor) -> np.ndarray | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"image": x.numpy()})[0]


def _write_torchscript(net: nn.Module, x: Tensor, tmp: Path, metadata: dict[str, str]) -> None:
    # torch.jit probes every attribute of the wrapped LightningModule; its `trainer` property raises
    # outside a Trainer unless Lightning's own scripting switch is on (what to_torchscript does).
    from lightning.pytorch.core.module import _jit_is_scripting

    log.warning("TorchScript is deprecated by PyTorch (torch.jit); --export onnx is the portable format")
    with _jit_is_scripting(), _quiet_tracing():
        traced = torch.jit.trace(net, (x,), check_trace=False)
        torch.jit.save(traced, str(tmp), _extra_files={"spseg.json": json.dumps(metadata)})


def _run_torchscript(path: Path, x: Tensor) -> np.ndarray:
    with torch.no_grad(), _quiet_tracing():
        return torch.jit.load(str(path), map_location="cpu")(x).numpy()


@contextlib.contextmanager
def _quiet_tracing() -> Iterator[None]:
    """Hide the tracer's expected warnings and torch.jit's deprecation (said once by the caller).

    Shapes become constants: the graph is for the training size, with a dynamic batch.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=FutureWarning)
        yield


def export_network(model: PredictionModel, fmt: str, out: str | Path) -> dict[str, Any]:
    """Export ``model`` as ONNX or TorchScript and verify the file against PyTorch.

    Args:
        model: A segmentation checkpoint rebuilt by :func:`engine.predict.checkpoints.load_prediction_model`.
        fmt: ``onnx`` or ``torchscript``.
        out: The file to write (atomically; an existing file is replaced only when it verifies).

    Returns:
        ``{"path", "format", "verified", "max_abs_diff"}``; ``verified`` is False only for ONNX without
        ``onnxruntime`` (then ``max_abs_diff`` is None and a warning says so).

    Raises:
        ValueError: For another format, ``onnx`` not installed (the message says how to install it),
            or an exported graph whose output differs from PyTorch's by more than 1e-4 (the file is
            not written).
    """
    if fmt not in GRAPH_SUFFIXES:
        raise ValueError(f"--export {fmt!r}: expected one of {', '.join(GRAPH_SUFFIXES)} for a network")
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError as err:
            raise ValueError("--export onnx needs the onnx package: pip install onnx onnxruntime") from err
    net = ProbabilityNet(model.module).eval().cpu()
    x = example_input(model)
    with torch.no_grad():
        expected = net(x).numpy()
    out = Path(out)
    write, run = (_write_onnx, _run_onnx) if fmt == "onnx" else (_write_torchscript, _run_torchscript)
    with atomic_path(out, keep_suffix=True) as tmp, _quiet_tracing():
        write(net, x, Path(tmp), export_metadata(model))
        got = run(Path(tmp), x)
        diff = None if got is None else float(np.abs(got - expected).max())
        if diff is not None and diff > ATOL:
            raise ValueError(
                f"--export {fmt}: the exported graph differs from PyTorch by {diff:.2e} > {ATOL}"
            )
    if diff is None:
        log.warning("%s: written but not verified (onnxruntime is not installed)", out)
    return {"path": str(out), "format": fmt, "verified": diff is not None, "max_abs_diff": diff}
