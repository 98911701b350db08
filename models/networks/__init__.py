"""Segmentation networks, one module per architecture; ``NETWORKS`` (registry.py) names them all."""

from models.networks.registry import NETWORKS, create_model, list_models, register_model

__all__ = ["NETWORKS", "create_model", "list_models", "register_model"]
