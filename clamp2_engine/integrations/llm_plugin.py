"""An ``llm`` plugin (entry point ``llm``): the embedding models ``clamp2`` and ``clamp2-demo``.

``llm embed -m clamp2 -c "ein Choral von Bach"`` embeds a text as ``clamp2-engine embed --pooled`` does;
binary content (``llm embed-multi ... --files DIR '*.abc' --binary``) is embedded as music: ABC, MTF, MIDI,
and MusicXML / MXL / MEI / Humdrum with the ``[convert]`` extra. A text is encoded by the model's cached
ONNX export when there is one (``clamp2-engine export onnx --model NAME``), else by PyTorch; music by
PyTorch. Vectors are the model's pooled features, as the engine stores them (compare with cosine).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

import llm

MODELS = {"clamp2": "clamp2", "clamp2-demo": "demo"}  # llm's model id -> the engine's model name
# what a binary item's first bytes say it is, for the suffix its conversion goes by
SIGNATURES = ((b"MThd", ".mid"), (b"PK\x03\x04", ".mxl"))


@llm.hookimpl
def register_embedding_models(register: Any) -> None:
    for model_id, name in MODELS.items():
        register(CLaMP2Embedding(model_id, name))


def suffix_of(data: bytes) -> str:
    """The file suffix of a binary item: MIDI, MXL, MusicXML, MEI, Humdrum, MTF or (else) ABC."""
    for signature, suffix in SIGNATURES:
        if data.startswith(signature):
            return suffix
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"ticks_per_beat"):
        return ".mtf"
    if b"<mei" in head:
        return ".mei"
    if head.startswith(b"<?xml") or b"<score-partwise" in head or b"<score-timewise" in head:
        return ".musicxml"
    if head.startswith(b"**kern") or b"\n**kern" in head:
        return ".krn"
    return ".abc"


def music_input(data: bytes) -> str:
    """Model input (interleaved ABC or MTF) for the bytes of one piece."""
    from clamp2_engine.music.inputs import music_query_input

    suffix = suffix_of(data)
    if suffix == ".mtf":
        return data.decode("utf-8")
    with tempfile.TemporaryDirectory(prefix="clamp2-llm-") as folder:
        path = os.path.join(folder, "piece" + suffix)
        with open(path, "wb") as fh:
            fh.write(data)
        return music_query_input(path, timeout=None)[1]


class CLaMP2Embedding(llm.EmbeddingModel):
    """One of the engine's models as an ``llm`` embedding model (each tower loaded when first needed)."""

    supports_text = True
    supports_binary = True
    batch_size = 32

    def __init__(self, model_id: str, name: str):
        self.model_id, self.name = model_id, name
        self.towers: dict[str, Any] = {}

    def tower(self, tower: str) -> Any:
        if tower not in self.towers:
            from clamp2_engine import LoadOptions, load
            from clamp2_engine.checkpoints import resolve_checkpoint, sha256_file
            from clamp2_engine.runtime.onnx_folder import cached_export, export_cache_dir, peek_identity

            options = LoadOptions(model=self.name, towers=(tower,))
            sha = sha256_file(resolve_checkpoint(self.name))
            window = (peek_identity(export_cache_dir(sha)) or {}).get("max_text_length")  # the model's own
            folder = cached_export({"checkpoint_sha256": sha, "max_text_length": window}, tower)
            if folder is not None and tower == "text":
                options = LoadOptions(backend="onnx", onnx_dir=os.fspath(folder), towers=(tower,))
            self.towers[tower] = load(options)
        return self.towers[tower]

    def embed_batch(self, items: Iterable[str | bytes]) -> Iterator[list[float]]:
        items = list(items)
        texts = [i for i, item in enumerate(items) if isinstance(item, str)]
        pieces = [i for i, item in enumerate(items) if not isinstance(item, str)]
        vectors: dict[int, list[float]] = {}
        if texts:
            found = self.tower("text").encode_text([items[i] for i in texts])
            vectors.update({i: v.tolist() for i, v in zip(texts, found, strict=True)})
        if pieces:
            inputs = [music_input(bytes(items[i])) for i in pieces]
            found = self.tower("music").encode_music(inputs)
            vectors.update({i: v.tolist() for i, v in zip(pieces, found, strict=True)})
        return iter([vectors[i] for i in range(len(items))])
