"""``GET /collections`` and ``GET /collections/{name}`` (its info and facets)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from clamp2_engine.serve.deps import ServiceDep
from clamp2_engine.serve.models import ERRORS, CollectionInfo, Collections

router = APIRouter(prefix="/collections", tags=["collections"], responses=ERRORS)


@router.get("", response_model=Collections)
async def collections(svc: ServiceDep) -> Collections:
    """The store's collections, with their sizes and models."""
    return Collections.model_validate({"collections": await asyncio.to_thread(svc.locked, svc.store.list)})


@router.get("/{name}", response_model=CollectionInfo)
async def collection(name: str, svc: ServiceDep) -> CollectionInfo:
    """One collection: engine, counts, index state, model record, and its facets (display values with
    counts)."""
    return CollectionInfo.model_validate(await asyncio.to_thread(svc.info, name))
