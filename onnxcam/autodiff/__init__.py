"""Reverse-mode differentiation of ONNX graphs into standard ONNX ops."""

from .builder import GRAD_SEED, gradient_model, grad_name

__all__ = ["GRAD_SEED", "gradient_model", "grad_name"]
