"""An export folder opened for ONNX Runtime: its graphs checked against each other, against their tokenizer
and against what the caller asked for (a graph that does not match is refused), then run by
:class:`~clamp2_engine.runtime.onnx_runtime.OnnxRuntime`; :mod:`clamp2_engine.loading` makes the
``Encoder``."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clamp2_engine.errors import about, first_line
from clamp2_engine.identity import ModelIdentity
from clamp2_engine.music.text import MAX_TEXT_LENGTH
from clamp2_engine.runtime.onnx_folder import (
    FORMAT_VERSION,
    META,
    MUSIC_FILE,
    TEXT_FILE,
    TOKENIZER_DIR,
    tokenizer_fingerprint,
)
from clamp2_engine.runtime.onnx_runtime import (
    CUDA,
    OnnxRuntime,
    Provider,
    build_session,
    graph_metadata,
)
from clamp2_engine.runtime.precision import check_int8
from clamp2_engine.runtime.tokenizer import TokenizerFile

log = logging.getLogger(__name__)


class OnnxExportMismatch(ValueError):
    """An export folder whose graphs do not match each other, the tokenizer or the requested model."""


def _check_graph(meta: dict[str, str], tower: str, path: Path) -> dict[str, Any]:
    """The identity stored in one graph, after checking its format and tower."""
    if META + "identity" not in meta:
        raise OnnxExportMismatch(
            f"{path} has no clamp2-engine metadata: export it with `clamp2-engine export onnx`"
        )
    if meta.get(META + "format") != FORMAT_VERSION:
        raise OnnxExportMismatch(
            f"{path} is export format {meta.get(META + 'format')!r}, this clamp2-engine "
            f"reads {FORMAT_VERSION!r}: export it again with `clamp2-engine export onnx`"
        )
    if meta.get(META + "tower") != tower:
        raise OnnxExportMismatch(f"{path} holds the {meta.get(META + 'tower')!r} tower, not {tower!r}")
    return json.loads(meta[META + "identity"])


def _check_music(session, meta: dict[str, str], identity: dict[str, Any], path: Path) -> None:
    from clamp2_engine.music.patches import ALPHABET

    dims = session.get_inputs()[0].shape
    if (
        len(dims) != 3
        or dims[2] != identity["patch_size"]
        or meta.get(META + "patch_size") != str(identity["patch_size"])
    ):
        raise OnnxExportMismatch(
            f"{path} takes patches shaped {dims}, but its model's patch size is {identity['patch_size']}"
        )
    if meta.get(META + "patch_length") != str(identity["patch_length"]):
        raise OnnxExportMismatch(
            f"{path}: patch length {meta.get(META + 'patch_length')} in the graph, "
            f"{identity['patch_length']} in its identity"
        )
    if meta.get(META + "alphabet") != str(ALPHABET):
        raise OnnxExportMismatch(
            f"{path} was exported for a {meta.get(META + 'alphabet')}-character patch "
            f"alphabet; this clamp2-engine patches with {ALPHABET}"
        )


def _check_tokenizer(tokenizer, meta: dict[str, str], path: Path, source: str) -> None:
    found = tokenizer_fingerprint(tokenizer)
    for key, value in found.items():
        if meta.get(META + key) != value:
            raise OnnxExportMismatch(
                f"tokenizer {source} does not match {path} ({key}: the graph was exported "
                f"with {meta.get(META + key)!r}, the tokenizer has {value!r})"
            )
    if int(meta.get(META + "vocab_size", "0")) < len(tokenizer):
        raise OnnxExportMismatch(
            f"tokenizer {source} has {len(tokenizer)} tokens but {path} embeds "
            f"{meta.get(META + 'vocab_size')}"
        )


def _check_requested(
    identity: dict[str, Any], model: str | os.PathLike | None, kind: str | None, onnx_dir: Path
) -> None:
    """``kind`` must match; ``model``, when given, must be the exported checkpoint (by sha256).

    A checkpoint file is hashed; a registry name is checked against the registry's sha256 when it has one
    (a name is never downloaded just to check it); other names cannot be verified and are only logged.
    """
    if kind and kind != identity["kind"]:
        raise OnnxExportMismatch(f"{onnx_dir} holds a {identity['kind']} export, not {kind}")
    if model is None:
        return
    from clamp2_engine.checkpoints import REGISTRY, sha256_file

    spec = os.fspath(model)
    path = Path(spec).expanduser()
    known = REGISTRY.get(spec)
    if path.is_file():
        found = sha256_file(path)
    elif known is not None and known.sha256:
        found = known.sha256
    else:
        if spec != identity["name"]:
            log.info(
                "model %r cannot be checked against %s (exported from %r); using the export",
                spec,
                onnx_dir,
                identity["name"],
            )
        return
    if found != identity["checkpoint_sha256"]:
        raise about(
            OnnxExportMismatch(
                f"{onnx_dir} was exported from another checkpoint than {spec} (sha256 "
                f"{identity['checkpoint_sha256'][:12]}...); leave the model out or export it again"
            ),
            "model",
        )


def open_export(
    onnx_dir: str | os.PathLike | None,
    *,
    model: str | os.PathLike | None = None,
    text_model: str | os.PathLike | None = None,
    device: str | None = None,
    towers: Sequence[str] = ("music", "text"),
    kind: str | None = None,
    providers: Sequence[Provider] | None = None,
    threads: int | None = None,
    max_text_length: int | None = None,
) -> tuple[OnnxRuntime, Any, ModelIdentity]:
    """``(runtime, tokenizer, identity)`` of an export folder, checked, for ONNX Runtime to serve
    (:func:`clamp2_engine.loading.build` makes them an ``Encoder``).

    ``max_text_length`` defaults to the export's; a smaller one windows texts more finely.

    ``model`` (optional) must be the exported checkpoint; ``text_model`` (optional) a tokenizer folder that
    matches the export (default: the export's own ``tokenizer/``).
    """
    load_music, load_text = "music" in towers, "text" in towers
    if onnx_dir is None:
        raise ValueError("the onnx backend needs onnx_dir (a folder written by `clamp2-engine export onnx`)")
    root = Path(onnx_dir).expanduser()
    music_path, text_path = root / MUSIC_FILE, root / TEXT_FILE
    if not music_path.is_file() and not text_path.is_file():
        raise FileNotFoundError(
            f"{root} holds no {MUSIC_FILE} or {TEXT_FILE}: export with `clamp2-engine export onnx --out DIR`"
        )
    if load_text and not text_path.is_file() and not load_music:
        raise FileNotFoundError(f"{root} has no {TEXT_FILE} (an M3 export, or a music-only one)")
    if load_music and not music_path.is_file():
        raise FileNotFoundError(f"{root} has no {MUSIC_FILE}")

    identities: list[tuple[Path, dict[str, Any]]] = []
    music_session = text_session = None
    if load_music:
        music_session = build_session(music_path, providers, threads, device)
        meta = graph_metadata(music_session)
        identity = _check_graph(meta, "music", music_path)
        _check_music(music_session, meta, identity, music_path)
        identities.append((music_path, identity))
    tokenizer = None
    if load_text and not text_path.is_file() and identities and identities[0][1]["kind"] == "clamp2":
        raise FileNotFoundError(f"{root} has no {TEXT_FILE}: it was exported without the text tower")
    if load_text and text_path.is_file():
        text_session = build_session(text_path, providers, threads, device)
        meta = graph_metadata(text_session)
        identities.append((text_path, _check_graph(meta, "text", text_path)))
        tokenizer, source = _load_tokenizer(root, text_model)
        _check_tokenizer(tokenizer, meta, text_path, source)
    (first_path, identity), *rest = identities
    for path, other in rest:
        if other != identity:
            raise OnnxExportMismatch(
                f"{first_path} and {path} come from different exports "
                f"({identity['checkpoint_sha256'][:12]} vs {other['checkpoint_sha256'][:12]})"
            )
    _check_requested(identity, model, kind, root)
    if max_text_length and identity["kind"] == "clamp2":
        exported = identity["max_text_length"] or MAX_TEXT_LENGTH
        if max_text_length > exported:
            raise about(
                ValueError(
                    f"{root} was exported for texts of at most {exported} tokens per window; "
                    f"export it again with a text window of {max_text_length}"
                ),
                "max_text_length",
            )
        identity = {**identity, "max_text_length": max_text_length}
    runtime = OnnxRuntime(music_session, text_session, identity["kind"])
    if runtime.dtype_name == "int8":
        check_int8(on_cpu=(text_session or music_session).get_providers()[0] != CUDA)
    return runtime, tokenizer, ModelIdentity(**identity)


def _load_tokenizer(root: Path, text_model: str | os.PathLike | None):
    """The export's own tokenizer (by ``tokenizers``, without importing ``transformers``), or ``text_model``
    by ``transformers``; the caller checks it against the graph either way."""
    spec = os.fspath(text_model) if text_model is not None else os.fspath(root / TOKENIZER_DIR)
    try:
        if text_model is None and TokenizerFile.available(spec):
            return TokenizerFile(spec), repr(spec)
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(spec), repr(spec)
    except Exception as exc:
        reason = first_line(exc, 200)
        raise FileNotFoundError(
            f"could not load the tokenizer {spec!r} for the ONNX text graph ({type(exc).__name__}: {reason})"
        ) from None
