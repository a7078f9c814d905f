"""What routes share, through ``Depends``: the service, and a request's query as the library's ``Query``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.exceptions import HTTPException

from clamp2_engine.errors import first_line
from clamp2_engine.search import Query
from clamp2_engine.serve.models import SearchRequest
from clamp2_engine.serve.service import Service


async def get_service(request: Request) -> Service:
    """The app's service (``async``: FastAPI runs a plain ``def`` dependency on a worker thread, a thread
    hop per request for a lookup)."""
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


def to_query(req: SearchRequest, text: bool = True) -> Query:
    """The library's query for a request; 400 for one that cannot run."""
    query = req.query if text and req.query and req.query.strip(" \t\r\n\x00") else None
    if text and query is None and not req.like:
        raise HTTPException(400, "give a query, or like (point ids), or both")
    try:
        return Query(
            text=query,
            modality=req.modality,
            mode=req.mode,
            k=req.k,
            offset=req.offset,
            filters=tuple(req.filters),
            like=tuple(req.like),
            unlike=tuple(req.unlike),
            diverse=req.diverse,
            weights=None if req.lexical_weight is None else (1.0, req.lexical_weight),
        )
    except ValueError as exc:
        raise HTTPException(400, first_line(exc)) from None
