"""The search page (``/``, static files) and ``GET /healthz``."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse, PlainTextResponse

from clamp2_engine.serve.deps import ServiceDep
from clamp2_engine.serve.models import ERRORS, Health

STATIC = Path(__file__).resolve().parents[1] / "static"
router = APIRouter()


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html")


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> FileResponse:
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")


@router.get(
    "/healthz", response_model=Health, response_model_exclude_unset=True, tags=["health"], responses=ERRORS
)
async def healthz(svc: ServiceDep, response: Response) -> Health:
    """Readiness: 200 ``ok`` once the default collection and its text tower are loaded; 503 ``starting``
    before, ``waiting`` (with the reason) while another process holds the collection (tried again every
    2 s), ``failed`` (with the reason) when they cannot be."""
    if not svc.ready:
        response.status_code = 503
        if svc.failure:
            return Health(status="failed", collection=svc.config.collection, error=svc.failure)
        if svc.waiting:
            return Health(status="waiting", collection=svc.config.collection, error=svc.waiting)
        return Health(status="starting", collection=svc.config.collection)
    from clamp2_engine.serve.audio import unavailable

    coll = svc.collection()
    return Health(
        status="ok",
        collection=coll.name,
        store=svc.store.describe(),
        model=coll.record.model.get("name"),
        audio=unavailable() or "ok",
        query_model=svc.query_model(),
    )


@router.get("/livez", tags=["health"])
async def livez() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "alive"}


@router.get("/metrics", tags=["health"], response_class=PlainTextResponse)
async def metrics(svc: ServiceDep) -> Response:
    """Prometheus metrics: requests by route and status, latency, micro-batch sizes, renderings."""
    return svc.metrics.exposition()
