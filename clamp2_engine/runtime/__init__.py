"""Inference backends behind one small interface (:class:`Runtime`)."""

from clamp2_engine.runtime.base import Runtime

BACKENDS = ("torch", "onnx")

__all__ = ["BACKENDS", "Runtime"]
