"""What the summary run and its driver share: item identity, the metadata sent to the model, the OUT
record, the run's report and its one fatal error (:mod:`.summarize` reads and plans, :mod:`.summarize_run`
asks the model; both import this, neither imports the other at import time)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clamp2_engine.ingest.llm_prompt import SUMMARY_KEYS

STAGE = "summarize"
SOURCE_KEY, LOAD_ERROR_KEY = "__source__", "__error__"  # set by load_items; never sent nor written
_NOT_METADATA = {*SUMMARY_KEYS, "filepaths", "nen_language", SOURCE_KEY, LOAD_ERROR_KEY}
FINAL_KINDS = {"none"}  # answers kept across re-runs (while the metadata is unchanged) unless retry_none


class SummarizeError(RuntimeError):
    """A problem that stops the whole run (bad key, unknown model, server unreachable, OUT locked)."""


def item_identity(item: dict[str, Any]) -> str:
    """A stable key for an item, equal for the input item and its line in OUT: its ``filepaths`` when
    it has any, else a hash of its metadata (null fields, summaries and ``nen_language`` left out)."""
    if LOAD_ERROR_KEY in item:
        return f"source:{item.get(SOURCE_KEY)}"
    fps = item.get("filepaths")
    if isinstance(fps, str):
        fps = [fps]
    if isinstance(fps, list) and fps:
        return "filepaths:" + json.dumps(fps, ensure_ascii=False)
    return "sha256:" + metadata_digest(item)


def _digest(data: dict[str, Any]) -> str:
    blob = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def metadata_digest(item: dict[str, Any]) -> str:
    """A hash of what would be sent to the model for ``item`` (to notice edited metadata)."""
    return _digest(metadata_of(item))


def metadata_of(item: dict[str, Any]) -> dict[str, Any]:
    """The fields sent to the model (and kept in OUT): everything but summaries, filepaths, nulls."""
    return {k: v for k, v in item.items() if v is not None and k not in _NOT_METADATA}


def has_information(meta: dict[str, Any]) -> bool:
    """Whether any metadata field holds something (a non-blank string, a non-empty list, a number...)."""
    return any(v.strip() if isinstance(v, str) else v not in ([], {}) for v in meta.values())


def output_record(item: dict[str, Any], summaries: dict[str, Any]) -> dict[str, Any]:
    """The OUT line: the input fields, then ``summary_en`` and ``summary_nen``, ``filepaths`` last."""
    rec = {**metadata_of(item), **summaries}
    if item.get("filepaths") is not None:
        rec["filepaths"] = item["filepaths"]
    return rec


@dataclass
class SummaryReport:
    """What a run did. ``done + skipped + failed + none`` is the number of items given."""

    out_path: Path
    errors_path: Path
    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    none: int = 0
    retries: int = 0
    tokens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    reasons: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out_path),
            "errors": str(self.errors_path),
            "total": self.total,
            "done": self.done,
            "skipped": self.skipped,
            "failed": self.failed,
            "none": self.none,
            "retries": self.retries,
            "tokens": self.tokens,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "seconds": round(self.seconds, 3),
            "reasons": dict(self.reasons),
        }
