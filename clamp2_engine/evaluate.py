"""Retrieval metrics (MRR, Hit@k), the CLaMP 2 score and collection-level evaluation.

Reference semantics (``semantic_search_metrics.py`` / ``clamp2_score.py`` of CLaMP 2):

- query and reference features are paired by key, the file name up to its first ``.``; only keys
  present on both sides count, and the references of those keys are the candidates;
- cosine similarity; rank of the true item = 1 + number of candidates with a strictly greater
  similarity (ties go to the true item: ``ties="reference"``); ``ties="pessimistic"`` counts every
  other candidate with a greater-or-equal similarity;
- Hit@k means rank <= k; MRR is the mean of 1 / rank;
- the CLaMP 2 score is the cosine similarity of the mean features of two folders (all files, unpaired).

Here the whole similarity matrix is computed block by block with one matrix product per block, so
10,000 pairs take seconds instead of the reference's quadratic Python loop. Keys of files in
sub-folders keep their relative folder (``sub/name``), which equals the reference's key in a flat folder.
Pooled features (``[H]``, ``[1, H]``) are used as they are; raw hidden states (``[1, L, H]``,
``[L, H]`` with L > 1) are mean-pooled over L (counted as ``mean_pooled``), so a folder of raw features
can be compared with another folder of raw features of the same model.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from clamp2_engine.jsonl import read_jsonl  # noqa: F401 - re-exported for callers

from .paths import iter_files

Ties = Literal["reference", "pessimistic"]
TIES: tuple[str, ...] = ("reference", "pessimistic")
HIT_AT: tuple[int, ...] = (1, 10, 100)
EPS = 1e-8


class FeatureError(ValueError):
    """A feature file that cannot be used (unreadable, wrong shape or dtype, not finite, no label)."""


@dataclass
class FeatureSet:
    """Feature vectors of one folder: ``keys[i]`` names row ``matrix[i]``; bad files in ``errors``."""

    root: Path
    keys: list[str] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    errors: list[tuple[str, str]] = field(default_factory=list)
    mean_pooled: int = 0

    def __len__(self) -> int:
        return len(self.keys)


def feature_key(root: str | os.PathLike, path: str | os.PathLike) -> str:
    """The pairing key: relative folder plus the file name up to its first ``.``."""
    root_p, path_p = Path(root), Path(path)
    rel = Path(path_p.name) if root_p.is_file() else path_p.relative_to(root_p)
    name = rel.name.split(".")[0]
    return (rel.parent / name).as_posix() if rel.parent != Path(".") else name


def load_vector(path: str | os.PathLike) -> tuple[np.ndarray, bool]:
    """One feature file as a float32 vector ``[H]`` and whether it was mean-pooled from raw ``[L, H]``.

    Raises :class:`FeatureError` with a readable reason for anything that is not a finite float array
    of shape ``[H]``, ``[1, H]``, ``[L, H]`` or ``[1, L, H]``.
    """
    arr = _load_array(path)
    if arr.ndim == 3:
        if arr.shape[0] != 1:
            raise FeatureError(f"expected [H], [1, H], [L, H] or [1, L, H], got shape {list(arr.shape)}")
        arr = arr[0]
    if arr.ndim == 2:
        if arr.shape[0] == 0:
            raise FeatureError(f"empty feature, shape {list(arr.shape)}")
        pooled = arr.shape[0] > 1
        vec = arr.astype(np.float64).mean(axis=0).astype(np.float32) if pooled else arr[0]
    elif arr.ndim == 1:
        vec, pooled = arr, False
    else:
        raise FeatureError(f"expected [H], [1, H], [L, H] or [1, L, H], got shape {list(arr.shape)}")
    if vec.shape[0] == 0:
        raise FeatureError("empty feature (hidden size 0)")
    return np.ascontiguousarray(vec, dtype=np.float32), pooled


def open_feature_array(path: str | os.PathLike, mmap: bool = False) -> np.ndarray:
    """A ``.npy`` feature file as a floating-point array (memory-mapped when ``mmap``), or a
    :class:`FeatureError` naming why it is unusable. Shared by retrieval evaluation and the probe."""
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as exc:  # unreadable, truncated, pickled object arrays, not .npy at all
        raise FeatureError(f"unreadable .npy file ({type(exc).__name__}: {str(exc)[:120]})") from exc
    if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.floating):
        raise FeatureError(f"expected a floating-point array, got dtype {getattr(arr, 'dtype', type(arr))}")
    return arr


def _load_array(path: str | os.PathLike) -> np.ndarray:
    arr = open_feature_array(path)
    if not np.isfinite(arr).all():
        raise FeatureError("feature contains NaN or infinite values")
    return arr


def load_features(folder: str | os.PathLike) -> FeatureSet:
    """Load every ``.npy`` under ``folder`` (recursively, sorted) as one vector per key.

    Bad files and duplicate keys (``a.abc.npy`` beside ``a.mtf.npy``: the first in sorted order is
    kept) and files whose hidden size differs from the folder's most common one are reported in
    ``errors`` as ``(path, reason)``; the rest is loaded.
    """
    root = Path(folder)
    if not root.exists():
        raise FileNotFoundError(f"feature folder not found: {root}")
    fs = FeatureSet(root=root)
    seen: dict[str, Path] = {}
    vectors: list[np.ndarray] = []
    for path in iter_files(root, {".npy"}, rejected=lambda p, r: fs.errors.append((os.fspath(p), r))):
        key = feature_key(root, path)
        if key in seen:
            fs.errors.append((os.fspath(path), f"duplicate key {key!r} (already taken by {seen[key].name})"))
            continue
        try:
            vec, pooled = load_vector(path)
        except FeatureError as exc:
            fs.errors.append((os.fspath(path), str(exc)))
            continue
        seen[key] = path
        fs.keys.append(key)
        fs.paths.append(path)
        vectors.append(vec)
        fs.mean_pooled += pooled
    if vectors:
        hidden = Counter(v.shape[0] for v in vectors).most_common(1)[0][0]
        keep = [i for i, v in enumerate(vectors) if v.shape[0] == hidden]
        for i, v in enumerate(vectors):
            if v.shape[0] != hidden:
                fs.errors.append(
                    (os.fspath(fs.paths[i]), f"hidden size {v.shape[0]} differs from the folder's {hidden}")
                )
        fs.keys = [fs.keys[i] for i in keep]
        fs.paths = [fs.paths[i] for i in keep]
        fs.matrix = np.stack([vectors[i] for i in keep])
    return fs


def pair_features(query: FeatureSet, reference: FeatureSet) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The common keys (sorted) and the query / reference rows for them, in the same order."""
    if len(query) and len(reference) and query.matrix.shape[1] != reference.matrix.shape[1]:
        raise ValueError(
            f"query features have size {query.matrix.shape[1]}, "
            f"reference features {reference.matrix.shape[1]}"
        )
    q_index = {k: i for i, k in enumerate(query.keys)}
    r_index = {k: i for i, k in enumerate(reference.keys)}
    keys = sorted(q_index.keys() & r_index.keys())
    q_rows = query.matrix[[q_index[k] for k in keys]] if keys else np.zeros((0, 0), np.float32)
    r_rows = reference.matrix[[r_index[k] for k in keys]] if keys else np.zeros((0, 0), np.float32)
    return keys, q_rows, r_rows


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, EPS)


@dataclass
class RankResult:
    """Per-query rank of the true item, its similarity and the best-scoring candidate."""

    ranks: np.ndarray  # int64 [n], 1-based
    true_similarity: np.ndarray  # float32 [n]
    top_index: np.ndarray  # int64 [n]
    top_similarity: np.ndarray  # float32 [n]


def retrieval_ranks(
    query: np.ndarray, reference: np.ndarray, ties: Ties = "reference", block: int = 1024
) -> RankResult:
    """Ranks of ``reference[i]`` among all rows of ``reference`` for ``query[i]`` (cosine similarity).

    ``query`` and ``reference`` are already paired ``[n, H]`` matrices. Computed in float32, ``block``
    query rows at a time (memory ``block * n * 4`` bytes).
    """
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    query, reference = np.asarray(query), np.asarray(reference)
    if query.ndim != 2 or query.shape != reference.shape:
        raise ValueError(
            f"query and reference must be paired [n, H] matrices, got {query.shape} and {reference.shape}"
        )
    n = query.shape[0]
    qn, rn = _normalise(query), _normalise(reference)
    ranks = np.empty(n, np.int64)
    true_sim = np.empty(n, np.float32)
    top_index = np.empty(n, np.int64)
    top_sim = np.empty(n, np.float32)
    for start in range(0, n, block):
        stop = min(start + block, n)
        sims = qn[start:stop] @ rn.T  # [b, n]
        rows = np.arange(stop - start)
        truth = sims[rows, np.arange(start, stop)]
        if ties == "reference":
            ranks[start:stop] = 1 + (sims > truth[:, None]).sum(axis=1)
        else:  # the true item itself is always >= itself: 1 + others that are >=
            ranks[start:stop] = (sims >= truth[:, None]).sum(axis=1)
        true_sim[start:stop] = truth
        top_index[start:stop] = sims.argmax(axis=1)
        top_sim[start:stop] = sims[rows, top_index[start:stop]]
    return RankResult(ranks, true_sim, top_index, top_sim)


def metrics_from_ranks(ranks: Sequence[float] | np.ndarray, hit_at: Iterable[int] = HIT_AT) -> dict[str, Any]:
    """MRR and Hit@k from 1-based ranks (``inf`` / ``nan`` = not retrieved: 0 for every metric)."""
    r = np.asarray(ranks, dtype=np.float64)
    n = int(r.size)
    found = np.isfinite(r)
    recip = np.where(found, 1.0 / np.where(found, r, 1.0), 0.0)
    out: dict[str, Any] = {"MRR": float(recip.mean()) if n else float("nan")}
    for k in hit_at:
        out[f"Hit@{k}"] = float((found & (r <= k)).mean()) if n else float("nan")
    out["pairs"] = n
    return out


def retrieval_metrics(query: np.ndarray, reference: np.ndarray, ties: Ties = "reference") -> dict[str, Any]:
    """MRR, Hit@1, Hit@10, Hit@100 and the number of pairs over already-paired ``[n, H]`` matrices."""
    return metrics_from_ranks(retrieval_ranks(query, reference, ties).ranks)


def round_metrics(metrics: dict[str, Any], decimals: int = 4) -> dict[str, Any]:
    """Floats rounded as the reference prints them (``round(x, 4)``)."""
    return {
        k: round(v, decimals) if isinstance(v, float) and math.isfinite(v) else v for k, v in metrics.items()
    }


@dataclass
class FolderEvaluation:
    """Outcome of :func:`evaluate_folders`."""

    metrics: dict[str, Any]
    keys: list[str]
    ranks: RankResult
    query: FeatureSet
    reference: FeatureSet

    @property
    def unmatched_query(self) -> int:
        return len(self.query) - len(self.keys)

    @property
    def unmatched_reference(self) -> int:
        return len(self.reference) - len(self.keys)

    def rank_records(self) -> Iterable[dict[str, Any]]:
        """One record per pair: key, rank, similarity of the true item, best candidate and its similarity."""
        r = self.ranks
        for i, key in enumerate(self.keys):
            yield {
                "key": key,
                "rank": int(r.ranks[i]),
                "similarity": float(r.true_similarity[i]),
                "top": self.keys[int(r.top_index[i])],
                "top_similarity": float(r.top_similarity[i]),
            }


def evaluate_folders(
    query_dir: str | os.PathLike, reference_dir: str | os.PathLike, ties: Ties = "reference"
) -> FolderEvaluation:
    """Load two feature folders, pair them by key and compute the retrieval metrics."""
    query, reference = load_features(query_dir), load_features(reference_dir)
    keys, q, r = pair_features(query, reference)
    ranks = retrieval_ranks(q, r, ties)
    return FolderEvaluation(metrics_from_ranks(ranks.ranks), keys, ranks, query, reference)


def clamp2_score(reference_dir: str | os.PathLike, test_dir: str | os.PathLike) -> dict[str, Any]:
    """Cosine similarity of the mean features of two folders (every loadable file, unpaired)."""
    ref, test = load_features(reference_dir), load_features(test_dir)
    for fs in (ref, test):
        if not len(fs):
            raise ValueError(f"no usable features in {fs.root}")
    if ref.matrix.shape[1] != test.matrix.shape[1]:
        raise ValueError(
            f"reference features have size {ref.matrix.shape[1]}, test features {test.matrix.shape[1]}"
        )
    a = ref.matrix.astype(np.float64).mean(axis=0)
    b = test.matrix.astype(np.float64).mean(axis=0)
    score = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), EPS))
    return {
        "clamp2_score": score,
        "reference": len(ref),
        "test": len(test),
        "errors": [*ref.errors, *test.errors],
    }


# --- collection-level evaluation (text-to-music through a search function) ---------------------------


def item_text(item: dict[str, Any], field: str) -> str | None:
    """The query text of ``item[field]``: a string, the first string of a list, or the ``summary`` of a
    ``{"language", "summary"}`` dict (or of the first such dict in a list); ``None`` when absent/empty."""
    value = item.get(field)
    if isinstance(value, list):
        value = next((v for v in value if v), None)
    if isinstance(value, dict):
        value = value.get("summary")
    if isinstance(value, str) and value.strip():
        return value
    return None


@dataclass
class CollectionEvaluation:
    """Outcome of :func:`evaluate_collection`; ``ranks[i]`` is ``None`` when the answer was not in the top k."""

    metrics: dict[str, Any]
    answers: list[Hashable]
    queries: list[str]
    ranks: list[int | None]
    skipped: list[tuple[str, str]]

    def rank_records(self) -> Iterable[dict[str, Any]]:
        for answer, query, rank in zip(self.answers, self.queries, self.ranks, strict=True):
            yield {"id": answer, "query": query, "rank": rank}


def evaluate_collection(
    search_fn: Callable[[list[str]], Sequence[Sequence[Hashable]]],
    items: Sequence[dict[str, Any]],
    field: str = "summary_en",
    id_fn: Callable[[dict[str, Any]], Hashable] | None = None,
    k: int = 100,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
) -> CollectionEvaluation:
    """Text-to-music retrieval through a search engine: each item's ``field`` text is a query whose
    answer is the item's own point.

    ``search_fn(texts)`` returns, per text, the ranked ids of at most ``k`` hits; ``id_fn(item)`` the id
    of the item's point. An answer outside the returned hits counts as not retrieved (0 in MRR and
    every Hit@k; MRR is thus MRR@k). Items without text or id are skipped with a reason.
    """
    if id_fn is None:
        raise ValueError("id_fn is required: it maps an item to the id of its point in the collection")
    queries: list[str] = []
    answers: list[Hashable] = []
    skipped: list[tuple[str, str]] = []
    for i, item in enumerate(items):
        text = item_text(item, field)
        paths = item.get("filepaths")
        label = f"item {i + 1}" + (f" ({paths[0]})" if isinstance(paths, list) and paths else "")
        if text is None:
            skipped.append((label, f"no text in field {field!r}"))
            continue
        try:
            answer = id_fn(item)
        except Exception as exc:
            skipped.append((label, f"no point id: {type(exc).__name__}: {exc}"))
            continue
        queries.append(text)
        answers.append(answer)
    ranks: list[int | None] = []
    for start in range(0, len(queries), batch_size):
        texts = queries[start : start + batch_size]
        hits = search_fn(texts)
        if len(hits) != len(texts):
            raise ValueError(f"search_fn returned {len(hits)} hit lists for {len(texts)} queries")
        for answer, ids in zip(answers[start : start + batch_size], hits, strict=True):
            ids = list(ids)[:k]
            ranks.append(ids.index(answer) + 1 if answer in ids else None)
        if progress:
            progress(len(texts))
    hit_at = tuple(h for h in HIT_AT if h <= k)
    metrics = metrics_from_ranks([math.inf if r is None else r for r in ranks], hit_at)
    metrics["k"] = k
    return CollectionEvaluation(metrics, answers, queries, ranks, skipped)
