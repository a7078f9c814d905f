"""ONNX Runtime backend: serves the graphs written by ``clamp2-engine export onnx``.

An export folder holds ``music.onnx`` (patch ids ``[B, L, P]`` + mask -> ``pooled`` ``[B, D]``, ``hidden``
``[B, L, H]``), ``text.onnx`` (token ids + mask -> the same; CLaMP 2 only) and ``tokenizer/``. Each graph
carries the model's identity and its tokenizer / patch settings in its ONNX metadata, and a graph that
does not match them is refused. Segmenting and the weighted mean over segments stay in the shared
:class:`~clamp2_engine.encoder.Encoder`, so both backends give the same features.

Providers are chosen in one place (:func:`select_providers`): explicit providers win, else CUDA when
``onnxruntime-gpu`` offers it, else CPU (with one warning).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clamp2_engine.errors import first_line
from clamp2_engine.runtime.base import BATCH_TOKENS, Runtime
from clamp2_engine.runtime.tokenizer import TokenizerFile
from clamp2_engine.text import MAX_TEXT_LENGTH

MUSIC_FILE = "music.onnx"
TEXT_FILE = "text.onnx"
TOKENIZER_DIR = "tokenizer"
MANIFEST = "manifest.json"
FORMAT_VERSION = "1"
META = "clamp2."  # metadata key prefix
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
ENV_PROVIDERS = "CLAMP2_ORT_PROVIDERS"  # comma-separated, e.g. "CPUExecutionProvider"
ENV_THREADS = "CLAMP2_ORT_THREADS"  # intra-op threads (default: ONNX Runtime's, one per physical core)

Provider = str | tuple[str, dict[str, Any]]
log = logging.getLogger(__name__)
_warned_cpu = False


class OnnxExportMismatch(ValueError):
    """An export folder whose graphs do not match each other, the tokenizer or the requested model."""


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def select_providers(
    providers: Sequence[Provider] | None = None,
    device: str | None = None,
    available: Sequence[str] | None = None,
) -> list[Provider]:
    """The execution providers to use, decided here and only here.

    Explicit ``providers`` (or ``$CLAMP2_ORT_PROVIDERS``) win; else ``device`` (``cpu``, ``cuda``,
    ``cuda:N``); else CUDA when ONNX Runtime offers it, else CPU with one warning per process.
    """
    global _warned_cpu
    if not providers and os.environ.get(ENV_PROVIDERS):
        providers = [p.strip() for p in os.environ[ENV_PROVIDERS].split(",") if p.strip()]
    if providers:
        return list(providers)
    available = available_providers() if available is None else list(available)
    if device:
        name, _, index = device.partition(":")
        if name == "cpu":
            return [CPU]
        if name != "cuda":
            raise ValueError(f"unknown device {device!r} for the ONNX backend; use cpu, cuda or cuda:N")
        if CUDA not in available:
            raise RuntimeError(
                "--device cuda was asked for but ONNX Runtime offers no CUDAExecutionProvider "
                "(pip install onnxruntime-gpu)"
            )
        return [(CUDA, {"device_id": int(index or 0)}), CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if not _warned_cpu:
        _warned_cpu = True
        log.warning(
            "ONNX Runtime has no CUDAExecutionProvider here: running on CPU (install onnxruntime-gpu "
            "for GPU inference, or pass --device cpu to silence this)"
        )
    return [CPU]


def session_options(threads: int | None = None):
    """Session options: all graph optimizations, ``threads`` intra-op threads (or ``$CLAMP2_ORT_THREADS``)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads is None and os.environ.get(ENV_THREADS):
        threads = int(os.environ[ENV_THREADS])
    if threads:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: node-placement notes are not for users
    return opts


def build_session(
    path: str | os.PathLike,
    providers: Sequence[Provider] | None = None,
    threads: int | None = None,
    device: str | None = None,
):
    """An ``InferenceSession`` for ``path`` on the providers :func:`select_providers` picks."""
    import onnxruntime as ort

    chosen = select_providers(providers, device)
    return ort.InferenceSession(os.fspath(path), session_options(threads), providers=chosen)


def graph_metadata(session) -> dict[str, str]:
    return dict(session.get_modelmeta().custom_metadata_map)


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


class OnnxRuntime(Runtime):
    """Music and text forward passes on ONNX Runtime sessions (either may be ``None``)."""

    backend = "onnx"

    def __init__(self, music_session=None, text_session=None, kind: str = "clamp2"):
        self.music_session, self.text_session, self.kind = music_session, text_session, kind
        self.has_music = music_session is not None
        self.has_text = text_session is not None and kind == "clamp2"

    def batch_tokens(self, modality: str) -> int:
        session = self.music_session if modality == "music" else self.text_session
        on_gpu = session is not None and session.get_providers()[0] == CUDA
        return BATCH_TOKENS[("cuda" if on_gpu else "cpu", "fp32")]

    @staticmethod
    def _run(session, names: tuple[str, str], ids: np.ndarray, masks: np.ndarray, output: str) -> np.ndarray:
        feed = {
            names[0]: np.ascontiguousarray(ids, dtype=np.int64),
            names[1]: np.ascontiguousarray(masks, dtype=np.int64),
        }
        return np.asarray(session.run([output], feed)[0], dtype=np.float32)

    def music(self, patches: np.ndarray, masks: np.ndarray, pooled: bool) -> np.ndarray:
        if not self.has_music:
            raise RuntimeError("this model has no music tower loaded")
        if pooled and self.kind == "m3":
            raise ValueError("M3 has no projection: its features are raw hidden states (normalize=False)")
        return self._run(
            self.music_session, ("patches", "masks"), patches, masks, "pooled" if pooled else "hidden"
        )

    def text(self, ids: np.ndarray, masks: np.ndarray, pooled: bool) -> np.ndarray:
        if not self.has_text:
            raise RuntimeError("this model has no text tower loaded")
        return self._run(self.text_session, ("ids", "masks"), ids, masks, "pooled" if pooled else "hidden")


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
    found = peek_identity(folder)
    if not found or found.get("checkpoint_sha256") != sha:
        return None
    if not (folder / (TEXT_FILE if tower == "text" else MUSIC_FILE)).is_file():
        return None
    exported, wanted = found.get("max_text_length"), identity.get("max_text_length")
    if tower == "text" and (exported or MAX_TEXT_LENGTH) < (wanted or MAX_TEXT_LENGTH):
        return None
    return folder


def peek_identity(onnx_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The identity recorded in an export folder's ``manifest.json`` (cheap; for planning only: the graphs'
    own metadata is what :func:`load_onnx_model` checks). ``None`` when there is no readable manifest."""
    try:
        return json.loads((Path(onnx_dir).expanduser() / MANIFEST).read_text(encoding="utf-8"))["identity"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _check_graph(meta: dict[str, str], tower: str, path: Path) -> dict[str, Any]:
    """The identity stored in one graph, after checking its format and tower."""
    if META + "identity" not in meta:
        raise OnnxExportMismatch(
            f"{path} has no clamp2-engine metadata: export it with `clamp2-engine export onnx`"
        )
    if meta.get(META + "format") != FORMAT_VERSION:
        raise OnnxExportMismatch(
            f"{path} is export format {meta.get(META + 'format')!r}, this clamp2-engine "
            f"reads {FORMAT_VERSION!r}: export it again"
        )
    if meta.get(META + "tower") != tower:
        raise OnnxExportMismatch(f"{path} holds the {meta.get(META + 'tower')!r} tower, not {tower!r}")
    return json.loads(meta[META + "identity"])


def _check_music(session, meta: dict[str, str], identity: dict[str, Any], path: Path) -> None:
    from clamp2_engine.patches import ALPHABET

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
                "--model %r cannot be checked against %s (exported from %r); using the export",
                spec,
                onnx_dir,
                identity["name"],
            )
        return
    if found != identity["checkpoint_sha256"]:
        raise OnnxExportMismatch(
            f"{onnx_dir} was exported from another checkpoint than {spec} (sha256 "
            f"{identity['checkpoint_sha256'][:12]}...); drop --model or export it again"
        )


def onnx_encoder(
    onnx_dir: str | os.PathLike | None,
    *,
    model: str | os.PathLike | None = None,
    text_model: str | os.PathLike | None = None,
    device: str | None = None,
    load_music: bool = True,
    load_text: bool = True,
    batch_size: int | None = None,
    max_batch_tokens: int | None = None,
    kind: str | None = None,
    providers: Sequence[Provider] | None = None,
    threads: int | None = None,
    max_text_length: int | None = None,
):
    """``(encoder, identity)`` served by ONNX Runtime from an export folder.

    ``max_text_length`` defaults to the export's; a smaller one windows texts more finely.

    ``model`` (optional) must be the exported checkpoint; ``text_model`` (optional) a tokenizer folder that
    matches the export (default: the export's own ``tokenizer/``).
    """
    from clamp2_engine.encoder import Encoder
    from clamp2_engine.identity import ModelIdentity

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
            raise ValueError(
                f"{root} was exported for texts of at most {exported} tokens per window; "
                f"re-export with --max-text-length {max_text_length}"
            )
        identity = {**identity, "max_text_length": max_text_length}
    runtime = OnnxRuntime(music_session, text_session, identity["kind"])
    encoder = Encoder.from_identity(
        runtime, tokenizer, identity, batch_size=batch_size, max_batch_tokens=max_batch_tokens
    )
    return encoder, ModelIdentity(**identity)


def load_onnx_model(cls, onnx_dir: str | os.PathLike | None, **kwargs: Any):
    """``cls(encoder, identity)`` from :func:`onnx_encoder` (``cls`` is :class:`clamp2_engine.api.CLaMP2`)."""
    return cls(*onnx_encoder(onnx_dir, **kwargs))


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
