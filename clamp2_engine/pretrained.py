"""A loaded model, as Python code uses it: ``CLaMP2.from_pretrained(...)`` / :func:`load`, then
``encode_music(...)`` and ``encode_text(...)``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from clamp2_engine.encoder import Encoder
from clamp2_engine.identity import ModelIdentity
from clamp2_engine.loading import LoadOptions, build

if TYPE_CHECKING:  # pragma: no cover  (typing.Unpack is Python 3.11+)
    from typing_extensions import Unpack

__all__ = ["CLaMP2", "M3", "LoadOptions", "ModelIdentity", "load"]

Items = str | os.PathLike | Sequence[str | os.PathLike]


class EncodeOptions(TypedDict, total=False):
    """Keyword options of :meth:`CLaMP2.encode_music` / :meth:`CLaMP2.encode_text`."""

    batch_size: int | None  # windows per forward pass at most (default: as the token budget allows)
    max_batch_tokens: int | None  # padded positions per forward pass (default: the model's)
    show_progress: bool | None  # a progress bar (default: only for long work)


def _is_single(items: Items) -> bool:
    return isinstance(items, str | os.PathLike)


def _path(spec: str | os.PathLike | None) -> str | None:
    return os.fspath(spec) if spec is not None else None


def load(options: LoadOptions | Mapping[str, Any] | None = None) -> CLaMP2:
    """The model ``options`` name (:class:`~clamp2_engine.loading.LoadOptions`), with its ``towers``."""
    return CLaMP2(*build(options))


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
    def precision(self) -> str:
        """What the model computes at: ``fp32``, ``bf16``, ``fp16`` (torch), or, under ONNX Runtime, the
        precision the graphs were exported at (``fp32``, ``fp16``, ``int8``); see ``encoder.runtime.backend``."""
        return self.encoder.runtime.dtype_name

    @property
    def embed_dim(self) -> int:
        return self.identity.embed_dim

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike | None = None,
        text_model: str | os.PathLike | None = None,
        **options: Any,
    ) -> CLaMP2:
        """Load a checkpoint (path or known name: ``clamp2``, ``m3``, ``demo``; default ``$CLAMP2_MODEL`` or
        ``clamp2``): ``load(LoadOptions(model=model, text_model=text_model, **options))``.

        Options (:class:`~clamp2_engine.loading.LoadOptions`): ``towers`` (``("text",)``: a text search
        needs only the text tower); ``dtype``: ``"auto"`` is bf16 where the CPU computes it natively
        (AVX-512 BF16, AMX) and on GPUs, else fp32 (``$CLAMP2_DTYPE`` overrides it; ``clamp.precision``
        says what was chosen); ``device``; ``max_text_length``: text tokens per window (default: what the
        checkpoint records, else the reference's 128); ``max_batch_tokens``: padded positions per forward
        pass (default tuned per device and dtype); ``batch_size``: windows per pass at most;
        ``backend="onnx"`` serves graphs exported by ``clamp2-engine export onnx`` from ``onnx_dir``;
        ``kind``: the kind the checkpoint must be.
        """
        encoder, identity = build(LoadOptions(model=_path(model), text_model=_path(text_model), **options))
        return cls(encoder, identity)

    def _encode(
        self, tower: str, items: Items, pooled: bool, options: EncodeOptions
    ) -> np.ndarray | list[np.ndarray]:
        if self.kind == "m3" and (pooled or tower == "text"):
            raise ValueError(
                "M3 is a music-only model: it has no text tower"
                if tower == "text"
                else "M3 has no projection: use pooled=False for its raw features"
            )
        unknown = set(options) - set(EncodeOptions.__annotations__)
        if unknown:
            raise TypeError(f"unknown encode option(s): {', '.join(sorted(unknown))}")
        single = _is_single(items)
        feats = self.encoder.encode(
            tower,
            [items] if single else list(items),
            pooled,
            options.get("batch_size"),
            options.get("show_progress"),
            options.get("max_batch_tokens"),
        )
        if single:
            return feats[0]
        if pooled:
            return np.stack(feats) if feats else np.zeros((0, self.embed_dim), dtype=np.float32)
        return feats

    def encode_music(
        self, items: Items, pooled: bool = True, **options: Unpack[EncodeOptions]
    ) -> np.ndarray | list[np.ndarray]:
        """Embed interleaved ABC / MTF (paths or texts). One item -> ``[D]``; a list -> ``[N, D]``.

        ``pooled=True``: the pooled, projected feature (not L2-normalised: compare with cosine);
        ``pooled=False``: raw hidden states ``[len, H]`` per item (a list for a list). Options: see
        :class:`EncodeOptions`.
        """
        return self._encode("music", items, pooled, options)

    def encode_text(
        self, items: Items, pooled: bool = True, **options: Unpack[EncodeOptions]
    ) -> np.ndarray | list[np.ndarray]:
        """Embed texts (strings, or paths to ``.txt`` files). One item -> ``[D]``; a list -> ``[N, D]``
        (``pooled`` and options as in :meth:`encode_music`)."""
        return self._encode("text", items, pooled, options)


class M3(CLaMP2):
    """An M3 symbolic-music encoder: ``M3("m3")`` (or a checkpoint path, or ``backend="onnx"``) loads it;
    ``encode_music(..., pooled=False)`` gives its raw features (it has no projection and no text tower)."""

    def __init__(self, model: str | os.PathLike | None = "m3", **kwargs: Any):
        loaded = CLaMP2.from_pretrained(model, kind="m3", **kwargs)
        super().__init__(loaded.encoder, loaded.identity)

    @classmethod
    def from_pretrained(
        cls, model: str | os.PathLike | None = "m3", text_model: None = None, **kwargs: Any
    ) -> M3:
        """The same as ``M3(model, **kwargs)`` (an M3 has no text model)."""
        return cls(model, **kwargs)
