"""The search page (``/``, static files) and ``GET /healthz``."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from clamp2_engine.serve.deps import ServiceDep
from clamp2_engine.serve.models import ERRORS, Health

STATIC = Path(__file__).resolve().parents[1] / "static"
router = APIRouter()


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html")


@router.get("/healthz", response_model=Health, tags=["health"], responses=ERRORS)
async def healthz(svc: ServiceDep) -> Health:
    """Ok once the default collection and its text tower are loaded."""
    coll = svc.collection()
    return Health(
        status="ok", collection=coll.name, store=svc.store.describe(), model=coll.record.model.get("name")
    )
