"""One embedded collection as a set of Qdrant Edge shards, one per *vector group*: the dense vector names
its points have (``abc+mtf`` for scores, ``mtf`` for MIDI files, ``abc+mtf+text`` with summaries, ``none``
for points with none). Qdrant keeps a slot for every named vector of every point of a shard, also for a
point that lacks the vector; a shard per group stores no slot a piece does not fill.

A point lives in exactly one shard: an upsert writes it into its group's shard (made on first use) and
deletes it from the others. Searches go to the shards holding their vector name and are merged by score
(cosine scores of one space: the merge is exact for nearest and recommend; MMR, which is not decomposable,
is applied per group); counts and facets are summed. A collection made before groups keeps its single shard
(``shard/``, every vector name) and works as before.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from clamp2_engine.store import edge_convert as cv
from clamp2_engine.store.backend import Index, Payload, Scored, Scroll, Search
from clamp2_engine.store.filters import Filters
from clamp2_engine.store.lexical import LEXICAL
from clamp2_engine.store.schema import Point
from clamp2_engine.types import VECTORS

LAYOUT_FILE = "layout.json"  # the groups' configuration; absent: a collection made before groups
GROUPS_DIR = "shards"
LEGACY_DIR = "shard"
LOCK_FILE = "lock"  # held (flock) while a process has the collection open
LEGACY = "*"  # the key of a collection's single shard made before groups: every vector name
NONE = "none"


@dataclass
class GroupLayout:
    """What every group shard of a collection is made with."""

    dim: int
    lexical: bool = True
    quantization: str = "none"
    indexes: list[Index] = field(default_factory=list)

    @classmethod
    def read(cls, folder: Path) -> GroupLayout | None:
        try:
            data = json.loads((folder / LAYOUT_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return cls(
            int(data["dim"]),
            bool(data.get("lexical", True)),
            str(data.get("quantization", "none")),
            [(str(k), str(kind)) for k, kind in data.get("indexes", [])],
        )

    def write(self, folder: Path) -> None:
        tmp = folder / (LAYOUT_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")
        os.replace(tmp, folder / LAYOUT_FILE)


def group_key(names: Iterable[str]) -> str:
    """The group of a point with dense vectors ``names``: ``abc+mtf``, ``mtf``, ..., ``none``."""
    dense = sorted(n for n in names if n in VECTORS)
    return "+".join(dense) if dense else NONE


def group_names(key: str) -> frozenset[str]:
    if key == LEGACY:
        return frozenset(VECTORS)
    return frozenset() if key == NONE else frozenset(key.split("+"))


def group_dirs(folder: Path) -> dict[str, Path]:
    """The shard folder of every group of the collection in ``folder`` (a legacy collection: one)."""
    if not (folder / LAYOUT_FILE).is_file():
        return {LEGACY: folder / LEGACY_DIR} if (folder / LEGACY_DIR).is_dir() else {}
    root = folder / GROUPS_DIR
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and is_group(p.name)}


def is_group(key: str) -> bool:
    return key == NONE or (bool(key) and all(n in VECTORS for n in key.split("+")))


Call = Callable[..., Any]  # runs a shard method, its exceptions as typed store errors


class ShardSet:
    """The open shards of one collection; ``add`` makes the shard of a new group."""

    def __init__(
        self, shards: dict[str, Any], call: Call, add: Callable[[str], Any] | None, cold: bool = False
    ):
        self.shards, self.call, self.add = dict(sorted(shards.items())), call, add
        self.cold = cold  # word indexes memory-mapped (a quantized collection)

    def _having(self, vector: str | None) -> list[Any]:
        if vector is None or vector == LEXICAL:
            return list(self.shards.values())
        return [s for k, s in self.shards.items() if vector in group_names(k)]

    def _key(self, p: Point) -> str:
        return LEGACY if LEGACY in self.shards else group_key(p.vectors)

    def _shard(self, key: str) -> Any:
        if key not in self.shards:
            assert self.add is not None
            self.shards[key] = self.add(key)
            self.shards = dict(sorted(self.shards.items()))
        return self.shards[key]

    # --- writing ---------------------------------------------------------------------------------

    def upsert(self, points: Sequence[Point]) -> None:
        groups: dict[str, list[Point]] = {}
        for p in points:
            groups.setdefault(self._key(p), []).append(p)
        for key, batch in groups.items():
            shard = self._shard(key)
            self.call(shard.update, qe.UpdateOperation.upsert_points([cv.edge_point(p) for p in batch]))
        for key, shard in self.shards.items():  # a point whose vectors changed leaves its old group
            moved = [p.id for k, batch in groups.items() if k != key for p in batch]
            if moved:
                self.call(shard.update, qe.UpdateOperation.delete_points(cv.ids(moved)))

    def rewrite(self, points: Sequence[Point]) -> None:
        """Payloads replaced and the vectors given set; a point given a dense vector its group lacks
        moves to the group it now belongs to."""
        where = self.locate([p.id for p in points])
        moving = []
        for p in points:
            key = where.get(p.id)
            if key is None:
                continue
            dense = {v for v in p.vectors if v in VECTORS}
            if not dense <= group_names(key):
                moving.append(p)
                continue
            shard = self.shards[key]
            self.call(shard.update, qe.UpdateOperation.overwrite_payload(cv.ids([p.id]), p.payload))
            if p.vectors:
                update = qe.UpdateOperation.update_vectors(
                    [qe.PointVectors(cv.ids([p.id])[0], cv.point_vectors(p))]
                )
                self.call(shard.update, update)
        if moving:
            old = {q.id: q for q in self.retrieve([p.id for p in moving], True, True)}
            self.upsert([Point(p.id, {**old[p.id].vectors, **p.vectors}, p.payload) for p in moving])

    def locate(self, point_ids: Sequence[str]) -> dict[str, str]:
        """The group of each of ``point_ids`` that exists."""
        found: dict[str, str] = {}
        for key, shard in self.shards.items():
            for r in self.call(shard.retrieve, cv.ids(point_ids), with_payload=False, with_vector=False):
                found[str(r.id)] = key
        return found

    def delete(self, point_ids: Sequence[str]) -> None:
        for shard in self.shards.values():
            self.call(shard.update, qe.UpdateOperation.delete_points(cv.ids(point_ids)))

    def set_index(self, index: Index) -> None:
        key, kind = index
        for shard in self.shards.values():
            if key in self.call(shard.info).payload_schema:
                self.call(shard.update, qe.UpdateOperation.delete_field_index(key))
            self.call(
                shard.update, qe.UpdateOperation.create_field_index(key, cv.index_schema(kind, self.cold))
            )

    # --- reading ---------------------------------------------------------------------------------

    def count(self, filters: Filters | None, vector: str | None) -> int:
        request = qe.CountRequest(exact=True, filter=cv.to_filter(filters, vector))
        return sum(self.call(s.count, request) for s in self._having(vector))

    def scroll_page(self, request: Scroll, offset: Any) -> tuple[list[Any], Any]:
        """A page of one shard after another; the offset is ``(group, the shard's own offset)``."""
        keys = list(self.shards)
        key, inner = offset if offset is not None else (keys[0] if keys else None, None)
        while key is not None:
            records, inner = self.call(
                self.shards[key].scroll,
                qe.ScrollRequest(
                    offset=inner,
                    limit=request.page,
                    filter=cv.to_filter(request.filters),
                    with_payload=cv.with_payload(request.payload),
                    with_vector=request.vectors,
                ),
            )
            if inner is None:
                later = keys[keys.index(key) + 1 :]
                key = later[0] if later else None
            if records:
                return records, (None if key is None else (key, inner))
        return [], None

    def retrieve(self, point_ids: Sequence[str], payload: Payload, vectors: bool) -> list[Point]:
        out = []
        for shard in self.shards.values():
            found = self.call(
                shard.retrieve, cv.ids(point_ids), with_payload=cv.with_payload(payload), with_vector=vectors
            )
            out.extend(cv.to_point(r) for r in found)
        return out

    def query(self, searches: Sequence[Search]) -> list[list[Scored]]:
        """Each search on the shards holding its vector, merged by score; one batch per shard."""
        per_shard: dict[int, list[tuple[int, Any]]] = {}
        shards = list(self.shards.values())
        for i, s in enumerate(searches):
            having = [id(x) for x in self._having(s.using)]
            many = len(having) > 1
            req = cv.request(s, s.limit + s.offset, 0) if many else cv.request(s)
            for j, shard in enumerate(shards):
                if id(shard) in having:
                    per_shard.setdefault(j, []).append((i, req))
        rows: list[list[list[Any]]] = [[] for _ in searches]  # per search, each shard's scored points
        for j, items in per_shard.items():
            reqs = [r for _i, r in items]
            shard = shards[j]
            found = (
                [self.call(shard.query, reqs[0])]
                if len(reqs) == 1
                else self.call(shard.query_batch, qe.QueryBatchRequest(reqs))
            )
            for (i, _r), points in zip(items, found, strict=True):
                rows[i].append(points)
        out = []
        for s, parts in zip(searches, rows, strict=True):
            if len(parts) <= 1:
                out.append(cv.scored(parts[0]) if parts else [])
                continue
            merged = heapq.merge(*parts, key=lambda p: -p.score)  # only the page's ids are read
            out.append(cv.scored(itertools.islice(merged, s.offset, s.offset + s.limit)))
        return out

    def facet(self, key: str, limit: int) -> list[tuple[str, int]]:
        counts: dict[str, int] = {}
        for shard in self.shards.values():
            try:
                hits = shard.facet(qe.FacetRequest(key, limit=limit, exact=True)).hits
            except Exception:  # noqa: BLE001 - no keyword index on the field (a collection made before it)
                continue
            for hit in hits:
                value = str(getattr(hit.value, "value", hit.value))
                counts[value] = counts.get(value, 0) + int(hit.count)
        return sorted(counts.items(), key=lambda vn: (-vn[1], vn[0]))[:limit]

    def info(self) -> dict[str, Any]:
        infos = [self.call(s.info) for s in self.shards.values()]
        return {
            "groups": list(self.shards),
            "segments": sum(i.segments_count for i in infos),
            "indexed_vectors": sum(i.indexed_vectors_count for i in infos),
            "payload_indexes": sorted({k for i in infos for k in i.payload_schema}),
        }

    def optimize(self) -> bool:
        changed = False
        for shard in self.shards.values():
            changed = bool(self.call(shard.optimize)) or changed
            self.call(shard.flush)
        return changed

    def close(self) -> None:
        for shard in self.shards.values():
            shard.close()
