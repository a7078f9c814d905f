"""``collections optimize --quantization``: a collection's vectors kept another way, nothing embedded
again. A server converts the collection in place (it builds the compressed copies and moves the originals
itself); the embedded engine copies every point, a page at a time, into a new collection laid out for the
new quantization, verifies the copy, and puts it in the old one's place (the old folder is set aside in
``<root>/.set-aside/``, as a repair does)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from clamp2_engine.store.collection import Collection
from clamp2_engine.store.quantization import quantization
from clamp2_engine.store.stores import Store

PAGE = 256  # points held at once while copying: memory stays what one page and the two engines need


def convert(
    store: Store, name: str, kind: str, progress: Callable[[int], None] | None = None, page: int = PAGE
) -> tuple[Collection, bool]:
    """Collection ``name`` with its vectors kept as ``kind`` says, and whether anything changed."""
    coll = store.collection(name)
    q = quantization(kind)
    if quantization(coll.record.quantization).kind == q.kind:
        return coll, False
    backend = store.backend
    if backend.engine == "server":
        backend.set_quantization(name, q.kind)  # type: ignore[attr-defined]
        coll.write_record(replace(coll.record, quantization=q.kind))
        return coll, True
    spare = f"{name}.converting"
    if backend.exists(spare):
        store.drop(spare)
    target = store.create(spare, replace(coll.record, quantization=q.kind, points=0))
    for points in coll.scroll(vectors=True, page=page):
        target.upsert(points)
        if progress:
            progress(len(points))
    target.verify_copy_of(coll, page)
    backend.replace_with(name, spare)  # type: ignore[attr-defined]
    return store.collection(name), True
