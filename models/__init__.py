"""Networks, losses, metrics and the non-pretext LightningModules."""

from models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
