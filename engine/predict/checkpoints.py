"""Rebuild a task module from its checkpoint for prediction, with what its data preprocessing was.

The checkpoint alone is enough when LightningCLI wrote it: ``hyper_parameters`` names the task class
(``_class_path``) and its arguments, ``datamodule_hyper_parameters`` the image size, channels, class
names and ``inference`` block. A config (``--cfg``) fills only what the checkpoint lacks.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, fields
from typing import Any

from core.checkpoint_io import read_checkpoint
from datasets.preprocess import InferenceConfig
from models.task import TaskModule

# Arguments that load other files at construction; their weights are in the checkpoint already.
_FILE_ARGS = ("pretrained", "teacher_checkpoint", "encoder_checkpoint", "init_checkpoint", "weights_path")
# State-dict prefixes of modules that are not rebuilt for prediction (a KD teacher).
_DROPPED_PREFIXES = ("teacher.",)


@dataclass
class PredictionModel:
    """A task module ready to predict, with its preprocessing.

    Attributes:
        path: The checkpoint file.
        module: The task module (eval mode, on the CPU until the runner moves it).
        num_classes: Output classes (at least 2: a sigmoid head gives background + foreground).
        in_channels: Input channels the network takes.
        image_size: ``(height, width)`` the network was trained at.
        inference: Resize/sliding and volume settings recorded at training.
        class_names: Names of the classes, or None.
    """

    path: str
    module: TaskModule
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    inference: InferenceConfig
    class_names: list[str] | None


def _section(config: dict[str, Any], name: str) -> dict[str, Any]:
    section = config.get(name) or {}
    return section if isinstance(section, dict) else {}


def _task_class(path: str, hparams: dict[str, Any], config: dict[str, Any]) -> type:
    class_path = hparams.get("_class_path") or _section(config, "model").get("class_path")
    if not class_path:
        raise ValueError(
            f"{path}: the checkpoint does not name its task class (no hyper_parameters._class_path); "
            "pass --cfg CONFIG with the model section it was trained with"
        )
    module_name, _, name = str(class_path).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{path}: task class {class_path!r} cannot be imported ({err})") from err
    if not (isinstance(cls, type) and issubclass(cls, TaskModule)):
        raise ValueError(f"{path}: {class_path!r} is not a task module (models.task.TaskModule)")
    return cls


def refuse_non_segmentation(path: str, cls: type) -> None:
    """One-line error for a checkpoint whose task does not output segmentations.

    Raises:
        ValueError: For pretext (MIM, probes, BYOL), few-shot and other non-segmentation tasks.
    """
    if getattr(cls, "predicts_segmentation", False):
        return
    name = f"{cls.__module__}.{cls.__qualname__}"
    if cls.__module__.startswith("pretext."):
        raise ValueError(
            f"{path}: this checkpoint is a pretext model ({name}); fine-tune it first "
            f"(model.pretrained: {path} in a segmentation config), then predict with that checkpoint"
        )
    if cls.__module__.startswith("models.fewshot"):
        raise ValueError(
            f"{path}: this checkpoint is a few-shot model ({name}); it segments queries from a support "
            "set: give --support IMAGE|VOLUME and --support_label MASK|LABEL (and no other kind of --ckpt)"
        )
    raise ValueError(f"{path}: the task {name} does not predict segmentations")


def _init_kwargs(cls: type, hparams: dict[str, Any], config: dict[str, Any], noisy_net: str | None) -> dict:
    kwargs = {k: v for k, v in hparams.items() if not k.startswith("_")}
    if not kwargs:
        kwargs = dict(_section(_section(config, "model"), "init_args"))
        data_args = _section(_section(config, "data"), "init_args")
        for key in ("num_classes", "in_channels"):
            if key in data_args:
                kwargs.setdefault(key, data_args[key])
    params = inspect.signature(cls.__init__).parameters
    for key in _FILE_ARGS:
        if key in params:
            kwargs[key] = None
    if noisy_net is not None:
        if "eval_net" not in params:
            raise ValueError(
                f"--noisy_net {noisy_net} applies to noisy-label checkpoints, not {cls.__name__}"
            )
        kwargs["eval_net"] = noisy_net
    return kwargs


def _load_weights(path: str, module: TaskModule, state: dict[str, Any]) -> None:
    state = {k: v for k, v in state.items() if not k.startswith(_DROPPED_PREFIXES)}
    result = module.load_state_dict(state, strict=False)
    unexpected = [k for k in result.unexpected_keys if not k.startswith(_DROPPED_PREFIXES)]
    if result.missing_keys or unexpected:
        raise ValueError(
            f"{path}: weights do not match {type(module).__name__} built from its hyper-parameters: "
            f"missing {result.missing_keys[:5]}, unexpected {unexpected[:5]}"
        )


def _inference_config(data_args: dict[str, Any]) -> InferenceConfig:
    block = data_args.get("inference") or {}
    if isinstance(block, InferenceConfig):
        return block
    known = {f.name for f in fields(InferenceConfig)}
    return InferenceConfig(**{k: v for k, v in dict(block).items() if k in known})


def _image_size(path: str, data_args: dict[str, Any]) -> tuple[int, int]:
    size = data_args.get("image_size")
    if size is None:
        raise ValueError(
            f"{path}: the checkpoint does not record the training image size "
            "(no datamodule_hyper_parameters.image_size); pass --cfg CONFIG with its data section"
        )
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[1])


def read_task_checkpoint(path: str, config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], type]:
    """Read a checkpoint and import its task class.

    Args:
        path: Lightning checkpoint written by ``run.py``.
        config: Merged ``--cfg`` content (names the class when the checkpoint does not).

    Returns:
        ``(checkpoint, hyper_parameters, task class)``.

    Raises:
        FileNotFoundError: If the checkpoint does not exist.
        ValueError: For a file that is not a Lightning checkpoint or names no importable task class.
    """
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a Lightning checkpoint (no state_dict); expected a run.py .ckpt file")
    hparams = dict(ckpt.get("hyper_parameters") or {})
    return ckpt, hparams, _task_class(path, hparams, config)


def build_task_module(
    path: str, ckpt: dict[str, Any], cls: type, config: dict[str, Any], noisy_net: str | None = None
) -> TaskModule:
    """The task module rebuilt from the checkpoint's hyper-parameters, weights loaded, in eval mode.

    Raises:
        ValueError: If the hyper-parameters do not build the class or the weights do not fit it.
    """
    hparams = dict(ckpt.get("hyper_parameters") or {})
    try:
        module = cls(**_init_kwargs(cls, hparams, config, noisy_net))
    except TypeError as err:
        raise ValueError(f"{path}: cannot rebuild {cls.__name__} from its hyper-parameters: {err}") from err
    _load_weights(path, module, ckpt["state_dict"])
    return module.eval()


def data_arguments(ckpt: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The data module's arguments: the checkpoint's, completed by the config's ``data.init_args``."""
    data_args = dict(ckpt.get("datamodule_hyper_parameters") or {})
    for key, value in _section(_section(config, "data"), "init_args").items():
        data_args.setdefault(key, value)
    return data_args


def load_prediction_model(
    path: str,
    config: dict[str, Any],
    noisy_net: str | None = None,
    read: tuple[dict[str, Any], dict[str, Any], type] | None = None,
) -> PredictionModel:
    """Rebuild the task module of a checkpoint and its preprocessing.

    Args:
        path: Lightning checkpoint written by ``run.py``.
        config: Merged ``--cfg`` content (used only where the checkpoint lacks a value).
        noisy_net: For noisy-label checkpoints: ``net1``, ``net2`` or ``mean`` (default: the checkpoint's).
        read: :func:`read_task_checkpoint`'s result when the checkpoint was read already.

    Returns:
        The model with its image size, channels, classes and inference settings.

    Raises:
        FileNotFoundError: If the checkpoint does not exist.
        ValueError: For a pretext/few-shot checkpoint, a checkpoint without class or image size (and no
            config giving them), or weights that do not fit.
    """
    ckpt, hparams, cls = read if read is not None else read_task_checkpoint(path, config)
    refuse_non_segmentation(path, cls)
    module = build_task_module(path, ckpt, cls, config, noisy_net)
    data_args = data_arguments(ckpt, config)
    in_channels = int(hparams.get("in_channels", data_args.get("in_channels", 3)))
    num_classes = max(int(hparams.get("num_classes", data_args.get("num_classes", 2))), 2)
    return PredictionModel(
        path=str(path),
        module=module,
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=_image_size(path, data_args),
        inference=_inference_config(data_args),
        class_names=data_args.get("class_names"),
    )


def check_ensemble(models: list[PredictionModel]) -> None:
    """Ensembled checkpoints must agree on classes and input channels.

    Raises:
        ValueError: Naming both checkpoints and both numbers.
    """
    first = models[0]
    for other in models[1:]:
        for what in ("num_classes", "in_channels"):
            a, b = getattr(first, what), getattr(other, what)
            if a != b:
                raise ValueError(
                    f"--ckpt {first.path} has {what}={a} but --ckpt {other.path} has {what}={b}; "
                    "ensembled checkpoints must agree"
                )
