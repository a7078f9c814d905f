"""The public Python API: ``CLaMP2.from_pretrained(...)``, ``encode_music(...)``, ``encode_text(...)``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clamp2_engine.encoder import Encoder

Items = str | os.PathLike | Sequence[str | os.PathLike]


@dataclass(frozen=True)
class ModelIdentity:
    """What a set of features was made with; stored with collections and ONNX exports."""

    name: str  # registry name or checkpoint file name
    kind: str  # "clamp2" | "m3"
    checkpoint_sha256: str
    embed_dim: int  # pooled feature size (clamp2), hidden size (m3)
    music_hidden_size: int
    text_hidden_size: int | None
    patch_size: int
    patch_length: int
    max_text_length: int | None
    text_model: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_single(items: Items) -> bool:
    return isinstance(items, str | os.PathLike)


class CLaMP2:
    """A loaded CLaMP 2 (or M3) model that embeds music and text.

    >>> model = CLaMP2.from_pretrained("clamp2")            # or a checkpoint path
    >>> model.encode_text("a melancholic waltz").shape       # (768,)
    >>> model.encode_music(["a.abc", "b.mtf"]).shape         # (2, 768)
    """

    def __init__(self, encoder: Encoder, identity: ModelIdentity):
        self.encoder = encoder
        self.identity = identity

    @property
    def kind(self) -> str:
        return self.identity.kind

    @property
    def embed_dim(self) -> int:
        return self.identity.embed_dim

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike | None = None, text_model: str | os.PathLike | None = None,
                        *, device: str | None = None, backend: str = "torch", dtype: str = "fp32",
                        onnx_dir: str | os.PathLike | None = None, load_music: bool = True,
                        load_text: bool = True, batch_size: int = 16, kind: str | None = None,
                        max_text_length: int = 128) -> CLaMP2:
        """Load a checkpoint (path or registry name; default ``$CLAMP2_MODEL`` or ``clamp2``).

        ``load_music`` / ``load_text`` pick the towers (a text search needs only the text tower).
        ``backend="onnx"`` serves graphs exported by ``clamp2-engine export onnx`` from ``onnx_dir``.
        """
        if backend == "onnx":
            from clamp2_engine.runtime.onnx_runtime import load_onnx_model

            return load_onnx_model(cls, onnx_dir, model=model, text_model=text_model, device=device,
                                   load_music=load_music, load_text=load_text, batch_size=batch_size, kind=kind)
        if backend != "torch":
            raise ValueError(f"unknown backend {backend!r}; choose torch or onnx")
        from clamp2_engine.checkpoints import detect_kind, load_checkpoint, resolve_checkpoint, sha256_file
        from clamp2_engine.models.factory import build_clamp2, build_m3_encoder, load_text_assets
        from clamp2_engine.runtime.torch_runtime import TorchRuntime

        path = resolve_checkpoint(model)
        state = load_checkpoint(path)["model"]
        found = detect_kind(state)
        if kind and kind != found:
            raise ValueError(f"{path.name} is a {found} checkpoint, not {kind}")
        name = os.fspath(model) if model is not None and not Path(os.fspath(model)).is_file() else path.name
        if found == "m3":
            module = build_m3_encoder(state)
            cfg = module.config
            runtime = TorchRuntime(module, device, dtype)
            encoder = Encoder(runtime, None, patch_size=cfg.patch_size, patch_length=cfg.patch_length,
                              strip_unit_length=True, batch_size=batch_size)
            identity = ModelIdentity(name, "m3", sha256_file(path), cfg.hidden_size, cfg.hidden_size, None,
                                     cfg.patch_size, cfg.patch_length, None, None)
            return cls(encoder, identity)
        tokenizer, hf_config, text_spec = None, None, None
        if load_text:
            from clamp2_engine.checkpoints import default_text_model

            text_spec = os.fspath(text_model) if text_model is not None else default_text_model()
            hf_config, tokenizer = load_text_assets(text_spec)
        module = build_clamp2(state, hf_config, load_text=load_text, load_music=load_music,
                              max_text_length=max_text_length)
        del state
        cfg = module.config
        if tokenizer is not None and len(tokenizer) > cfg.text.vocab_size:
            raise ValueError(f"tokenizer {text_spec!r} has {len(tokenizer)} tokens but the checkpoint's text "
                             f"tower has {cfg.text.vocab_size}: wrong --text-model?")
        runtime = TorchRuntime(module, device, dtype)
        encoder = Encoder(runtime, tokenizer, patch_size=cfg.music.patch_size, patch_length=cfg.music.patch_length,
                          max_text_length=max_text_length, batch_size=batch_size)
        identity = ModelIdentity(name, "clamp2", sha256_file(path), cfg.embed_dim, cfg.music.hidden_size,
                                 cfg.text.hidden_size, cfg.music.patch_size, cfg.music.patch_length,
                                 max_text_length, os.path.basename(os.path.normpath(text_spec)) if text_spec else None)
        return cls(encoder, identity)

    def _encode(self, modality: str, items: Items, normalize: bool, batch_size: int | None,
                show_progress: bool | None) -> np.ndarray | list[np.ndarray]:
        single = _is_single(items)
        feats = self.encoder.encode(modality, [items] if single else list(items), normalize, batch_size,
                                    show_progress)
        if single:
            return feats[0]
        if normalize:
            return np.stack(feats) if feats else np.zeros((0, self.embed_dim), dtype=np.float32)
        return feats

    def encode_music(self, items: Items, normalize: bool = True, batch_size: int | None = None,
                     show_progress: bool | None = None) -> np.ndarray | list[np.ndarray]:
        """Embed interleaved ABC / MTF (paths or texts). One item -> ``[D]``; a list -> ``[N, D]``.

        ``normalize=False`` gives raw hidden states ``[len, H]`` per item (a list for a list).
        """
        if self.kind == "m3" and normalize:
            raise ValueError("M3 has no projection: use normalize=False for its raw features")
        return self._encode("music", items, normalize, batch_size, show_progress)

    def encode_text(self, items: Items, normalize: bool = True, batch_size: int | None = None,
                    show_progress: bool | None = None) -> np.ndarray | list[np.ndarray]:
        """Embed texts (strings, or paths to ``.txt`` files). One item -> ``[D]``; a list -> ``[N, D]``."""
        if self.kind == "m3":
            raise ValueError("M3 is a music-only model: it has no text tower")
        return self._encode("text", items, normalize, batch_size, show_progress)


def M3(model: str | os.PathLike | None = "m3", **kwargs: Any) -> CLaMP2:  # noqa: N802 - a factory named like a class
    """Load an M3 checkpoint; its ``encode_music(..., normalize=False)`` gives raw features."""
    return CLaMP2.from_pretrained(model, kind="m3", **kwargs)
