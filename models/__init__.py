"""Networks, losses, metrics, the task contract (task.py) and the non-pretext task modules."""

from models.networks.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
