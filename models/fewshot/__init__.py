"""SSL-ALPNet: adaptive local prototype pooling (ALP), the DeepLabV3 feature encoder and the module."""

from __future__ import annotations

from models.fewshot.alp import (
    alp_logits,
    class_prototypes,
    global_prototype,
    local_prototypes,
    prototype_scores,
)
from models.fewshot.network import FewShotEncoder

__all__ = [
    "FewShotEncoder",
    "alp_logits",
    "class_prototypes",
    "global_prototype",
    "local_prototypes",
    "prototype_scores",
]
