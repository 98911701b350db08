"""Inference helpers shared by prediction, validation and test (sliding windows)."""

from models.inference.sliding_window import gaussian_weights, sliding_window_inference, window_starts

__all__ = ["gaussian_weights", "sliding_window_inference", "window_starts"]
