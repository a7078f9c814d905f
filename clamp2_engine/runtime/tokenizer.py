"""A saved fast tokenizer run by the ``tokenizers`` library directly: the ids ``transformers`` would give,
without importing ``transformers`` (about a second) in a process that serves ONNX graphs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"


class TokenizerFile:
    """The tokenizer saved in ``folder`` (``tokenizer.json`` and ``tokenizer_config.json``), with the part
    of the ``transformers`` tokenizer interface the encoder uses: ``tok(text)["input_ids"]`` (special
    tokens added), ``sep_token``, ``pad_token_id``, ``get_vocab()`` and ``len()``."""

    def __init__(self, folder: str | os.PathLike):
        from tokenizers import Tokenizer

        folder = Path(folder)
        self.backend = Tokenizer.from_file(os.fspath(folder / TOKENIZER_JSON))
        self.backend.no_truncation()  # windows are cut by the encoder, as the reference does
        self.backend.no_padding()
        config = json.loads((folder / TOKENIZER_CONFIG).read_text(encoding="utf-8"))
        self.sep_token = _token(config.get("sep_token"))
        self.pad_token = _token(config.get("pad_token"))
        self.pad_token_id = self.backend.token_to_id(self.pad_token) if self.pad_token else None
        if not self.sep_token or self.pad_token_id is None:
            raise ValueError(f"{folder / TOKENIZER_CONFIG} names no sep_token or no known pad_token")

    @staticmethod
    def available(folder: str | os.PathLike) -> bool:
        """Whether ``folder`` holds a saved fast tokenizer and ``tokenizers`` is installed."""
        import importlib.util

        folder = Path(folder)
        return (
            (folder / TOKENIZER_JSON).is_file()
            and (folder / TOKENIZER_CONFIG).is_file()
            and importlib.util.find_spec("tokenizers") is not None
        )

    def __call__(self, text: str) -> dict[str, list[int]]:
        return {"input_ids": self.backend.encode(text, add_special_tokens=True).ids}

    def get_vocab(self) -> dict[str, int]:
        return self.backend.get_vocab(with_added_tokens=True)

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)


def _token(value: Any) -> str | None:
    """A special token as ``tokenizer_config.json`` writes it: a string, or ``{"content": ...}``."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None
