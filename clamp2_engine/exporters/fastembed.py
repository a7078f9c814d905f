"""Every CLaMP 2 export is also a fastembed model folder: a service with only ``qdrant-client[fastembed]``
turns a user's words into the engine's query vectors (``TextEmbedding.add_custom_model(**fastembed.json)``
with ``specific_model_path`` = the export).

fastembed tokenizes with ``tokenizer.json`` as it is, truncated to ``model_max_length``, and feeds
``input_ids`` and ``attention_mask`` to ``text.onnx``, whose ``pooled`` output already holds the masked mean
and the projection. The engine prepares a text first (its non-empty lines joined by the sep token, as the
reference does): the ``tokenizer.json`` written here does the same in its normalizer, and the join is
checked at export time against the engine's own token ids. Two differences stay, and are documented: a
text longer than the window is truncated by fastembed where the engine averages its windows, and lines
that repeat are kept by fastembed where the engine keeps each line once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clamp2_engine.paths import atomic_write_text
from clamp2_engine.runtime.onnx_folder import FASTEMBED_JSON, TEXT_FILE, TOKENIZER_DIR
from clamp2_engine.runtime.tokenizer import TOKENIZER_CONFIG, TOKENIZER_JSON, TokenizerFile

SPECIAL_TOKENS_MAP = "special_tokens_map.json"
CONFIG_JSON = "config.json"
SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# texts whose fastembed ids must equal the engine's (one line, lines, blank and edge lines, other scripts)
PROBES = (
    "a melancholic waltz for solo piano",
    "Ein Choral von Bach\nin G-Dur, vierstimmig",
    "\n\nfirst line\n\n\nsecond line\n",
    "茉莉花\n中国民歌",
    "Jig in D\r\nfor fiddle",
    "  spaced  words \n \n end",
    "une valse\ttriste\n\u00e9t\u00e9 1890",
)


class FastembedExportError(RuntimeError):
    """The fastembed folder would not give the engine's token ids."""


def join_normalizer(sep: str) -> list[dict[str, Any]]:
    """``tokenizers`` normalizers that make a text's non-empty lines one string joined by ``sep`` (newlines
    at either end dropped, runs of newlines one separator; ``\\A``/``\\z``: Oniguruma's ``^``/``$`` are
    line anchors)."""
    return [
        {"type": "Replace", "pattern": {"Regex": r"\A\n+|\n+\z"}, "content": ""},
        {"type": "Replace", "pattern": {"Regex": r"\n+"}, "content": sep},
    ]


def _token(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def model_name(identity: dict[str, Any]) -> str:
    """The name a service registers the model under: ``clamp2-text`` for the released model, else
    ``clamp2-<name>-text``."""
    stem = Path(str(identity.get("name") or "model")).stem.lower()
    return "clamp2-text" if stem == "clamp2" else f"clamp2-{stem}-text"


def write_fastembed_folder(out: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """The files fastembed loads, beside ``text.onnx`` in the export ``out``, checked; returns (and writes
    as ``fastembed.json``) the keyword arguments of ``TextEmbedding.add_custom_model`` but ``sources``,
    with ``pooling`` as a ``PoolingType`` name and ``folder``, the ``specific_model_path`` relative to
    the export."""
    src = out / TOKENIZER_DIR
    tokenizer = json.loads((src / TOKENIZER_JSON).read_text(encoding="utf-8"))
    config = json.loads((src / TOKENIZER_CONFIG).read_text(encoding="utf-8"))
    sep, pad = _token(config.get("sep_token")), _token(config.get("pad_token"))
    if not sep or not pad:
        raise FastembedExportError(f"{src / TOKENIZER_CONFIG} names no sep_token or pad_token")
    window = int(identity["max_text_length"])
    found = tokenizer.get("normalizer")
    tokenizer["normalizer"] = {
        "type": "Sequence",
        "normalizers": join_normalizer(sep) + ([found] if found else []),
    }
    added = {t["content"]: t for t in tokenizer.get("added_tokens", [])}
    if sep not in added:
        raise FastembedExportError(f"the sep token {sep!r} is not one of the tokenizer's added tokens")
    added[sep]["normalized"] = True  # found in the normalized text, where the join puts it
    pad_id = added[pad]["id"] if pad in added else None
    specials = {k: _token(config.get(k)) for k in SPECIAL_KEYS}
    special_map = {
        k: {f: added[v][f] for f in ("content", "single_word", "lstrip", "rstrip", "normalized", "special")}
        for k, v in specials.items()
        if v in added
    }
    files = {
        TOKENIZER_JSON: tokenizer,
        TOKENIZER_CONFIG: {**config, "model_max_length": window},
        SPECIAL_TOKENS_MAP: special_map,
        CONFIG_JSON: {
            "model_type": "xlm-roberta",
            "pad_token_id": pad_id,
            "hidden_size": identity["text_hidden_size"],
        },
    }
    for name, content in files.items():
        atomic_write_text(out / name, json.dumps(content, ensure_ascii=False, indent=1) + "\n")
    check_tokenizer(out, window)
    spec = {
        "model": model_name(identity),
        "pooling": "DISABLED",
        "normalization": True,
        "dim": int(identity["embed_dim"]),
        "model_file": TEXT_FILE,
        "additional_files": sorted([*files, *(p.name for p in out.glob(TEXT_FILE + ".data"))], key=str.lower),
        "output_name": "pooled",
        "folder": ".",
    }
    atomic_write_text(out / FASTEMBED_JSON, json.dumps(spec, indent=2) + "\n")
    return spec


def fastembed_tokenizer(folder: Path):
    """The folder's tokenizer as fastembed 0.9 sets it up (truncation at ``model_max_length``, the special
    tokens map added), without importing fastembed."""
    from tokenizers import AddedToken, Tokenizer

    tok = Tokenizer.from_file(str(folder / TOKENIZER_JSON))
    config = json.loads((folder / TOKENIZER_CONFIG).read_text(encoding="utf-8"))
    tok.enable_truncation(max_length=int(config["model_max_length"]))
    for token in json.loads((folder / SPECIAL_TOKENS_MAP).read_text(encoding="utf-8")).values():
        tok.add_special_tokens([AddedToken(**token) if isinstance(token, dict) else token])
    return tok


def check_tokenizer(out: Path, window: int) -> None:
    """:class:`FastembedExportError` unless fastembed's ids equal the engine's for every probe text."""
    from clamp2_engine.music.text import join_for_tokenizer

    engine, service = TokenizerFile(out / TOKENIZER_DIR), fastembed_tokenizer(out)
    for text in PROBES:
        want = engine(join_for_tokenizer(text, engine.sep_token))["input_ids"]
        got = service.encode(text).ids
        if len(want) <= window and got != want:
            raise FastembedExportError(
                f"fastembed would tokenize {text[:40]!r} as {got[:12]}..., the engine as {want[:12]}...: "
                "this tokenizer's normalizer cannot reproduce the engine's text preparation"
            )
