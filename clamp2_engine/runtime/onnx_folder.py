"""An ONNX export folder, as ``export onnx`` writes it and the runtime reads it: ``music.onnx`` (patch ids
``[B, L, P]`` + mask -> ``pooled`` ``[B, D]``, ``hidden`` ``[B, L, H]``), ``text.onnx`` (token ids + mask
-> the same; CLaMP 2 only), ``tokenizer/`` and ``manifest.json``; each graph carries the model's identity
and its tokenizer / patch settings in its metadata. Also the model cache that ``export onnx`` without
``--out`` fills and search reads (:func:`cached_export`)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from clamp2_engine.music.text import MAX_TEXT_LENGTH

MUSIC_FILE = "music.onnx"
TEXT_FILE = "text.onnx"
TOKENIZER_DIR = "tokenizer"
MANIFEST = "manifest.json"
FORMAT_VERSION = "2"  # 2: the text graph's inputs are input_ids and attention_mask (fastembed's names)
FASTEMBED_JSON = "fastembed.json"  # TextEmbedding.add_custom_model's arguments (exporters/fastembed.py)
META = "clamp2."  # metadata key prefix


def tokenizer_fingerprint(tokenizer) -> dict[str, str]:
    """What a text graph must agree with: vocabulary size and digest, pad id and sep token."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    digest = hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode("utf-8")).hexdigest()
    return {
        "tokenizer_size": str(len(tokenizer)),
        "tokenizer_sha256": digest,
        "pad_token_id": str(tokenizer.pad_token_id),
        "sep_token": str(tokenizer.sep_token),
    }


def export_cache_dir(checkpoint_sha256: str, precision: str = "fp32") -> Path:
    """Where ``export onnx`` without ``--out`` writes a checkpoint's graphs, and where search and serve
    look for them: ``<data dir>/onnx/<first 16 hex digits of its sha256>-<precision>``."""
    from clamp2_engine.paths import data_dir

    return data_dir() / "onnx" / f"{checkpoint_sha256[:16]}-{precision}"


def cached_export(identity: dict[str, Any], tower: str = "text") -> Path | None:
    """The cached fp32 export of the model ``identity`` describes when it holds ``tower``'s graph, serves
    texts at least as long as the identity's windows, and onnxruntime is installed; else ``None``."""
    import importlib.util

    sha = identity.get("checkpoint_sha256")
    if not sha or importlib.util.find_spec("onnxruntime") is None:
        return None
    folder = export_cache_dir(sha)
    if (peek_manifest(folder) or {}).get("format") != FORMAT_VERSION:
        return None  # an export of an older format: served by PyTorch until `export onnx` writes it again
    found = peek_identity(folder)
    if not found or found.get("checkpoint_sha256") != sha:
        return None
    if not (folder / (TEXT_FILE if tower == "text" else MUSIC_FILE)).is_file():
        return None
    exported, wanted = found.get("max_text_length"), identity.get("max_text_length")
    if tower == "text" and (exported or MAX_TEXT_LENGTH) < (wanted or MAX_TEXT_LENGTH):
        return None
    return folder


def peek_manifest(onnx_dir: str | os.PathLike) -> dict[str, Any] | None:
    """An export folder's ``manifest.json`` (cheap; for planning only: the graphs' own metadata is what
    :func:`~clamp2_engine.runtime.onnx_loader.open_export` checks). ``None`` when there is no readable manifest."""
    try:
        found = json.loads((Path(onnx_dir).expanduser() / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def peek_precision(onnx_dir: str | os.PathLike) -> str | None:
    """The precision an export folder's manifest records (fp32, fp16, int8), or ``None``."""
    found = (peek_manifest(onnx_dir) or {}).get("precision")
    return str(found) if found else None


def peek_identity(onnx_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The model identity an export folder's manifest records, or ``None``."""
    found = (peek_manifest(onnx_dir) or {}).get("identity")
    return found if isinstance(found, dict) else None
