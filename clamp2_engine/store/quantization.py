"""How a collection keeps its dense vectors: the originals (float32) alone, in RAM; or a compressed copy in
RAM (int8 scalar, TurboQuant 4-bit, binary) with the originals on disk, every search's candidates rescored
against the originals with some oversampling (Qdrant's advice for collections that outgrow RAM). The two
engines turn a :class:`Quantization` into their own configuration (:mod:`.edge_convert`, :mod:`.server`).

Measured in ``benchmarks/bench_store.py`` (docs/scale.md): int8 keeps recall@10 >= 0.99 against exact
float32 search with the oversampling below, at a quarter of the RAM per vector and a faster search; it is
the default of new collections."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from clamp2_engine.errors import CollectionError

Kind = Literal["none", "int8", "turbo4", "binary"]
KINDS: tuple[Kind, ...] = ("none", "int8", "turbo4", "binary")
DEFAULT: Kind = "int8"


@dataclass(frozen=True)
class Quantization:
    """One kind of :data:`KINDS`, with the figures a search and a sizing need."""

    kind: Kind
    bytes_per_dim: float  # RAM per dimension of the copy searched (4: the originals themselves)
    oversampling: float  # candidates fetched from the copy per hit wanted, rescored against the originals

    @property
    def compressed(self) -> bool:
        """A compressed copy in RAM, the originals on disk."""
        return self.kind != "none"


_ALL = {
    "none": Quantization("none", 4.0, 1.0),
    "int8": Quantization("int8", 1.0, 2.0),
    "turbo4": Quantization("turbo4", 0.5, 3.0),
    "binary": Quantization("binary", 1 / 8, 4.0),
}


def quantization(kind: str | None) -> Quantization:
    """The :class:`Quantization` named ``kind`` (``None``: the collection predates them: ``none``);
    :class:`CollectionError` for an unknown name."""
    name = "none" if kind is None else str(kind).strip().lower()
    if name not in _ALL:
        raise CollectionError(f"unknown quantization {kind!r}: choose one of {', '.join(KINDS)}")
    return _ALL[name]
