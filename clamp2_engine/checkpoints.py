"""Checkpoints in the reference format: the registry of known ones, hub download, ``weights_only``
loading, the kind (CLaMP 2 or M3) from key names, and saving.

A reference checkpoint is ``{'model', 'optimizer', 'lr_sched', 'epoch', 'best_epoch', 'min_eval_loss'}``;
CLaMP 2 model keys are ``text_model.* text_proj.* music_model.* music_proj.*``, M3 keys ``encoder.*
decoder.*``. Sizes are read from tensor shapes, never assumed, by :mod:`clamp2_engine.models.factory`.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from clamp2_engine.errors import about, first_line

if TYPE_CHECKING:  # torch and the model configs load only when a checkpoint is read (a search served by
    # ONNX Runtime imports this module for its names and errors, and never needs torch)
    import torch


DEFAULT_TEXT_MODEL = "FacebookAI/xlm-roberta-base"
DEMO_SHA256 = (
    "3a2c91a448422442f86ef5f488c450008e63ff651b18af8d45ca4e44b90469a7"  # assets/demo/clamp2_demo.pth
)
CLAMP2_PREFIX = "music_model."
M3_PREFIX = "encoder."


ASSETS = Path(__file__).resolve().parent / "assets"
HUB_HOST = "huggingface.co"


@dataclass(frozen=True)
class KnownCheckpoint:
    """A known checkpoint: released weights on the Hugging Face Hub, or a file shipped in the package.

    ``text_model`` is the config + tokenizer the checkpoint's text tower goes with (a Hub name, or a folder
    of the package for shipped models); ``sha256`` is checked after every download and before first use.
    """

    name: str
    kind: str  # "clamp2" | "m3"
    repo_id: str | None  # None: shipped in the package, ``filename`` relative to clamp2_engine/assets
    filename: str
    sha256: str | None = None
    description: str = ""
    text_model: str | None = DEFAULT_TEXT_MODEL

    @property
    def packaged(self) -> bool:
        return self.repo_id is None

    def text_model_path(self) -> str | None:
        """The text model spec: a package folder made absolute, or a Hub name as it is."""
        if self.packaged and self.text_model:
            return os.fspath(ASSETS / self.text_model)
        return self.text_model


REGISTRY: dict[str, KnownCheckpoint] = {
    "clamp2": KnownCheckpoint(
        "clamp2",
        "clamp2",
        "sander-wood/clamp2",
        "weights_clamp2_h_size_768_lr_5e-05_batch_128_scale_1_t_length_128_t_model_FacebookAI_xlm-roberta-base"
        "_t_dropout_True_m3_True.pth",
        description="CLaMP 2 (M3 music tower + XLM-R base text tower, 768-d joint space)",
    ),
    "m3": KnownCheckpoint(
        "m3",
        "m3",
        "sander-wood/clamp2",
        "weights_m3_p_size_64_p_length_512_t_layers_3_p_layers_12_h_size_768_lr_0.0001_batch_16_mask_0.45.pth",
        description="M3 symbolic-music encoder (patch size 64, 512 patches, 12 layers, hidden 768)",
        text_model=None,
    ),
    "demo": KnownCheckpoint(
        "demo",
        "clamp2",
        None,
        "demo/clamp2_demo.pth",
        sha256=DEMO_SHA256,
        description="a toy CLaMP 2 trained on music21's corpus, shipped in the package (see its model card)",
        text_model="demo/text",
    ),
}


class ModelNotFoundError(RuntimeError):
    """A model could not be found locally nor fetched; the message is one line for the user."""


class CheckpointError(ValueError):
    """A checkpoint is unreadable, of an unknown layout, or does not fit the model."""


def default_model() -> str:
    return os.environ.get("CLAMP2_MODEL") or "clamp2"


def default_text_model(model: str | os.PathLike | None = None) -> str:
    """``$CLAMP2_TEXT_MODEL``, else the text model a known ``model`` goes with, else XLM-R base."""
    env = os.environ.get("CLAMP2_TEXT_MODEL")
    if env:
        return env
    known = REGISTRY.get(os.fspath(model)) if model is not None else None
    return (known.text_model_path() if known else None) or DEFAULT_TEXT_MODEL


_OFFLINE: bool | None = None


def hub_offline() -> bool:
    """Whether the Hugging Face Hub is out of reach: ``HF_HUB_OFFLINE`` set, or one quick connection test
    (2 s, made once per process) to the Hub's host (``HF_ENDPOINT``'s when set) failed."""
    global _OFFLINE
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    if _OFFLINE is None:
        import socket
        from urllib.parse import urlsplit

        url = urlsplit(os.environ.get("HF_ENDPOINT") or f"https://{HUB_HOST}")
        port = url.port or (80 if url.scheme == "http" else 443)
        try:
            socket.create_connection((url.hostname or HUB_HOST, port), timeout=2).close()
            _OFFLINE = False
        except OSError:
            _OFFLINE = True
    return _OFFLINE


OFFLINE_HINT = (
    "use a local checkpoint file, or try `clamp2-engine demo` (a small model shipped with the package)"
)


HUB_PREFIX = "hf:"  # hf:OWNER/REPO/FILE.pth: a checkpoint file of any Hub repository


def is_model_name(spec: str | os.PathLike | None) -> bool:
    """Whether ``spec`` names a model (a known name or an ``hf:`` reference) rather than a file."""
    return isinstance(spec, str) and (spec in REGISTRY or spec.startswith(HUB_PREFIX))


def resolve_checkpoint(spec: str | os.PathLike | None = None) -> Path:
    """A local checkpoint path for an explicit model reference: a known name (``clamp2``, ``m3``, ``demo``;
    fetched from the Hub, or shipped), ``hf:OWNER/REPO/FILE`` (any Hub file), or else a file path (a
    ``Path`` always is; write ``./demo`` for a file named like a known model). Hub files come from the
    local cache without any request when the Hub is out of reach."""
    if spec is None:
        spec = default_model()
    if not is_model_name(spec):
        path = Path(os.fspath(spec)).expanduser()
        if path.is_file():
            return path
        raise about(
            ModelNotFoundError(
                f"no checkpoint file at {os.fspath(spec)!r} (known models: {', '.join(REGISTRY)}; a Hub file: "
                f"{HUB_PREFIX}OWNER/REPO/FILE.pth)"
            ),
            "model",
        )
    assert isinstance(spec, str)
    if spec.startswith(HUB_PREFIX):
        repo, _, filename = spec.removeprefix(HUB_PREFIX).rpartition("/")
        if repo.count("/") != 1 or not filename:
            raise about(
                ModelNotFoundError(f"{spec!r} is no Hub reference: write {HUB_PREFIX}OWNER/REPO/FILE.pth"),
                "model",
            )
        return _hub_file(spec, KnownCheckpoint(spec, "", repo, filename))
    known = REGISTRY[spec]
    if known.packaged:
        local = ASSETS / known.filename
        if not local.is_file():
            raise about(
                ModelNotFoundError(
                    f"the {spec!r} model is missing from this installation ({local}); reinstall clamp2-engine"
                ),
                "model",
            )
    else:
        local = _hub_file(spec, known)
    if known.sha256 and sha256_file(local) != known.sha256:
        raise about(
            ModelNotFoundError(
                f"checksum mismatch for {local}; delete it and retry, or use a local checkpoint file"
            ),
            "model",
        )
    return local


class HubUnreachableError(OSError):
    """What was asked for is not in the local cache, and the Hub is out of reach."""


T = TypeVar("T")


def cache_first(load: Callable[[bool], T]) -> T:
    """``load(local_files_only)`` from the local Hugging Face cache first, with no request at all (start-up
    stays off the network); only on a miss, and when the Hub is reachable (:func:`hub_offline`), from the
    Hub. A miss while offline raises :class:`HubUnreachableError`."""
    try:
        return load(True)
    except Exception:
        if hub_offline():
            raise HubUnreachableError("not in the local cache, and the Hub is out of reach") from None
    return load(False)


def _hub_file(spec: str, known: KnownCheckpoint) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(
            cache_first(lambda local: hf_hub_download(known.repo_id, known.filename, local_files_only=local))
        )
    except Exception as exc:  # offline, gated, renamed...: one line, no traceback
        if isinstance(exc, HubUnreachableError):
            raise about(
                ModelNotFoundError(
                    f"model {spec!r} is not in the local Hugging Face cache and the Hub is out of reach (offline); "
                    + OFFLINE_HINT
                ),
                "model",
            ) from None
        raise about(
            ModelNotFoundError(
                f"could not fetch model {spec!r} ({known.repo_id}/{known.filename}) from the Hugging Face Hub "
                f"({type(exc).__name__}: {first_line(exc)}); download it elsewhere and use the local file"
            ),
            "model",
        ) from None


_SHA_CACHE: dict[tuple[str, int, int], str] = {}
SHA_CACHE_FILE = "sha256-cache.json"
SHA_CACHE_ENTRIES = 256


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) in this process and in the data folder's
    ``sha256-cache.json`` (a 1.5 GB checkpoint takes a second to hash; a search should not pay that)."""
    import json

    from clamp2_engine.paths import atomic_write_text, data_dir

    st = os.stat(path)
    resolved = os.fspath(Path(path).resolve())
    key = (resolved, st.st_size, st.st_mtime_ns)
    if key in _SHA_CACHE:
        return _SHA_CACHE[key]
    store = data_dir() / SHA_CACHE_FILE
    try:
        known = json.loads(store.read_text(encoding="utf-8"))
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    entry = known.get(resolved)
    if isinstance(entry, list) and entry[:2] == [st.st_size, st.st_mtime_ns] and len(entry) == 3:
        _SHA_CACHE[key] = entry[2]
        return entry[2]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    _SHA_CACHE[key] = digest = h.hexdigest()
    known[resolved] = [st.st_size, st.st_mtime_ns, digest]
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(store, json.dumps(dict(list(known.items())[-SHA_CACHE_ENTRIES:])))
    except OSError:  # a read-only data folder: hashed again next time
        pass
    return digest


def _unloadable(path: Path, exc: BaseException) -> str:
    """Why ``path`` is no checkpoint this engine loads, in the user's words (no exception class, and no
    advice to switch the weights-only safety off)."""
    if "Weights only load failed" in str(exc) or "weights_only" in str(exc):
        return (
            f"{path} holds Python objects besides tensors, and checkpoints are loaded as weights only "
            "(never code): save its state dict alone, torch.save({'model': model.state_dict()}, path)"
        )
    try:
        head = path.read_bytes()[:4]
    except OSError:
        head = b""
    kind = "a zip file that is not" if head.startswith(b"PK") else "not"
    return f"{path} is {kind} a PyTorch checkpoint (a .pth file written by torch.save): {_what_file(path)}"


def _what_file(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".abc", ".mid", ".midi", ".mtf", ".xml", ".mxl", ".musicxml", ".krn"):
        return "it is music; give --model a checkpoint, and the music where the command takes files"
    if suffix in (".txt", ".json", ".jsonl", ".md", ".csv"):
        return "it is a text file"
    return "give --model a checkpoint file, or a known name (clamp2, m3, demo)"


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True`` (memory-mapped when possible).

    A bare state dict is wrapped as ``{'model': state_dict}``.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:  # legacy (non-zip) files cannot be memory-mapped
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(_unloadable(path, exc)) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} does not hold a dict of tensors")
    if "model" not in obj:
        obj = {"model": obj}
    if not isinstance(obj["model"], dict) or not all(
        isinstance(v, torch.Tensor) for v in obj["model"].values()
    ):
        raise CheckpointError(f"{path}: 'model' is not a state dict of tensors")
    return obj


def detect_kind(state_dict: dict[str, torch.Tensor]) -> str:
    """``'clamp2'`` or ``'m3'`` from the state dict's keys."""
    if any(k.startswith(CLAMP2_PREFIX + "patch_embedding.") for k in state_dict):
        return "clamp2"
    if any(k.startswith(M3_PREFIX + "patch_embedding.") for k in state_dict):
        return "m3"
    raise CheckpointError(
        "unknown checkpoint layout: neither CLaMP 2 (music_model.*) nor M3 (encoder.*) keys"
    )


def save_checkpoint(
    path: str | os.PathLike,
    model_state: dict[str, torch.Tensor],
    optimizer: Any = None,
    lr_sched: Any = None,
    epoch: int = 0,
    best_epoch: int = 0,
    min_eval_loss: float = math.inf,
    **extra: Any,
) -> Path:
    """Write a checkpoint in the reference layout, atomically (temporary file then rename)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {
        "model": {k: v.detach().cpu() for k, v in model_state.items()},
        "optimizer": optimizer or {},
        "lr_sched": lr_sched or {},
        "epoch": epoch,
        "best_epoch": best_epoch,
        "min_eval_loss": min_eval_loss,
        **extra,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path
