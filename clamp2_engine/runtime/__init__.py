"""Inference backends behind one small interface (:class:`Runtime`); their names are
:data:`clamp2_engine.types.BACKENDS`."""

from clamp2_engine.runtime.base import Runtime

__all__ = ["Runtime"]
