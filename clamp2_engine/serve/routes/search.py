"""``POST /search`` (text, examples, or both) and ``POST /search/music`` (an uploaded piece)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError

from clamp2_engine.search import Result
from clamp2_engine.serve.deps import ServiceDep, to_query
from clamp2_engine.serve.models import ERRORS, Modality, SearchRequest, SearchResponse
from clamp2_engine.serve.uploads import music_input

router = APIRouter(tags=["search"], responses=ERRORS)


def answer(result: Result) -> SearchResponse:
    body = {"hits": [h.as_dict() for h in result.hits], "mode": result.mode}
    body |= ({"why": result.why} if result.why else {}) | (
        {"notices": result.notices} if result.notices else {}
    )
    return SearchResponse.model_validate(body)


@router.post("/search", response_model=SearchResponse, response_model_exclude_unset=True)
async def search(req: SearchRequest, svc: ServiceDep) -> SearchResponse:
    """Search by text in any language (by meaning and by name), by pieces the collection holds (`like`),
    or both."""
    query = to_query(req)
    session = svc.session(req.collection)  # an unknown collection is a 404 before any encoding
    plan = session.plan(query)  # planned once: what is encoded here is what is searched
    text = plan.query.text if plan.needs_text_vector else None
    vector = (await svc.encode_text([text], req.collection))[0] if text else None
    return answer(await asyncio.to_thread(svc.search, plan, vector, req.collection))


@router.post("/search/music", response_model=SearchResponse, response_model_exclude_unset=True)
async def search_music(
    request: Request,
    svc: ServiceDep,
    file: UploadFile = File(..., description="a score, MIDI or .mtf file"),
    k: int = Form(10),
    modality: Modality = Form("any"),
    filters: list[str] = Form([]),
    offset: int = Form(0),
    collection: str | None = Form(None),
    diverse: bool = Form(False),
) -> SearchResponse:
    """Search by an uploaded piece of music (query by example)."""
    try:
        req = SearchRequest(
            k=k, modality=modality, filters=filters, offset=offset, collection=collection, diverse=diverse
        )
    except ValueError as exc:
        raise RequestValidationError(getattr(exc, "errors", lambda: [])()) from None
    query = to_query(req, text=False)
    svc.collection(req.collection)
    vector = await svc.encode_music(
        await music_input(file, request, svc.config.upload_timeout), req.collection
    )
    return answer(await asyncio.to_thread(svc.search, query, vector, req.collection))
