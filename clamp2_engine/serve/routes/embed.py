"""``POST /embed/text`` and ``POST /embed/music``: the collection's model's vectors, for services that
query their own Qdrant."""

from __future__ import annotations

from fastapi import APIRouter, File, Form, Request, UploadFile

from clamp2_engine.serve.deps import ServiceDep
from clamp2_engine.serve.models import ERRORS, EmbedResponse, EmbedTextRequest, ModelInfo
from clamp2_engine.serve.service import Service
from clamp2_engine.serve.uploads import music_input

router = APIRouter(prefix="/embed", tags=["embed"], responses=ERRORS)


def model_info(svc: Service, name: str | None) -> ModelInfo:
    record = svc.collection(name).record
    return ModelInfo(
        name=record.model.get("name"), checkpoint_sha256=record.model.get("checkpoint_sha256"), dim=record.dim
    )


@router.post("/text", response_model=EmbedResponse)
async def embed_text(req: EmbedTextRequest, svc: ServiceDep) -> EmbedResponse:
    """Text vectors (1 to 256 texts), batched with concurrent requests."""
    vectors = await svc.encode_text(req.texts, req.collection)
    return EmbedResponse(vectors=vectors.tolist(), model=model_info(svc, req.collection))


@router.post("/music", response_model=EmbedResponse)
async def embed_music(
    request: Request,
    svc: ServiceDep,
    file: UploadFile = File(..., description="a score, MIDI or .mtf file"),
    collection: str | None = Form(None),
) -> EmbedResponse:
    """The vector of an uploaded piece of music."""
    svc.collection(collection)
    vector = await svc.encode_music(await music_input(file, request, svc.config.upload_timeout), collection)
    return EmbedResponse(vectors=[vector.tolist()], model=model_info(svc, collection))
