"""Reverse-mode differentiation of ONNX graphs into standard ONNX ops."""

from .builder import GRAD_SEED, grad_name, gradient_model

__all__ = ["GRAD_SEED", "gradient_model", "grad_name"]
