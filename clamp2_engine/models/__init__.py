"""M3 and CLaMP 2 model definitions (transformers' BERT, XLM-R and GPT-2 underneath)."""

from clamp2_engine.models.clamp2 import CLaMP2Model, masked_mean
from clamp2_engine.models.config import CLaMP2Config, M3Config, TextConfig
from clamp2_engine.models.m3 import M3Model, M3PatchDecoder, M3PatchEncoder

__all__ = [
    "CLaMP2Config",
    "CLaMP2Model",
    "M3Config",
    "M3Model",
    "M3PatchDecoder",
    "M3PatchEncoder",
    "TextConfig",
    "masked_mean",
]
