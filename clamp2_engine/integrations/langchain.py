"""A LangChain ``Embeddings`` over a clamp2-engine model: texts in any language into the space of a
collection's ``abc``, ``mtf`` and ``text`` vectors (LangChain's ``QdrantVectorStore`` searches an existing
collection with it; see the README)."""

from __future__ import annotations

from typing import Any

from langchain_core.embeddings import Embeddings


class CLaMP2Embeddings(Embeddings):
    """``CLaMP2Embeddings("clamp2")`` (or ``"demo"``, a checkpoint path, or ``backend="onnx",
    onnx_dir=...``): the text tower, loaded on first use, with any other :class:`LoadOptions`."""

    def __init__(self, model: str | None = "clamp2", **options: Any):
        self.options = {"model": model, **options, "towers": ("text",)}
        self.loaded: Any = None

    def _model(self) -> Any:
        if self.loaded is None:
            from clamp2_engine import LoadOptions, load

            self.loaded = load(LoadOptions(**{k: v for k, v in self.options.items() if v is not None}))
        return self.loaded

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return [v.tolist() for v in self._model().encode_text(list(texts))]

    def embed_query(self, text: str) -> list[float]:
        return self._model().encode_text(text).tolist()
