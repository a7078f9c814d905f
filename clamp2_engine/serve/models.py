"""The HTTP API's request and response bodies (pydantic): what ``/docs`` documents for every route."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from clamp2_engine.types import LEXICAL_WEIGHT

MAX_TEXTS = 256
MAX_TEXT_CHARS = 4096
MAX_TEXT_VOLUME = 64 * MAX_TEXT_CHARS  # characters in one /embed/text request, all texts together

Modality = Literal["any", "abc", "mtf", "text"]
Mode = Literal["hybrid", "semantic", "lexical"]


class Error(BaseModel):
    """Every error: one plain sentence."""

    error: str = Field(examples=["no collection 'nope' (see `GET /collections`)"])


class SearchRequest(BaseModel):
    query: str | None = Field(None, max_length=MAX_TEXT_CHARS, description="text in any language")
    k: StrictInt = Field(10, ge=1, le=1000, description="hits per page")
    modality: Modality = "any"
    mode: Mode = Field("hybrid", description="hybrid: meaning and words; semantic: CLaMP 2; lexical: BM25")
    lexical_weight: float | None = Field(
        None, ge=0, le=100, description=f"hybrid: words against meaning's 1 (default {LEXICAL_WEIGHT:g})"
    )
    filters: list[str] = Field(default_factory=list, max_length=32, examples=[["composer=bach"]])
    like: list[str] = Field(default_factory=list, max_length=32, description="point ids")
    unlike: list[str] = Field(default_factory=list, max_length=32, description="point ids")
    offset: StrictInt = Field(0, ge=0, le=10_000)
    collection: str | None = Field(
        None, max_length=255, description="default: the collection the server was started with"
    )
    diverse: StrictBool = Field(False, description="varied results (maximal marginal relevance)")

    @model_validator(mode="after")
    def _text(self) -> SearchRequest:
        for name in ("query", "collection", "filters", "like", "unlike"):
            value = getattr(self, name)
            for text in value if isinstance(value, list) else [value]:
                if isinstance(text, str) and not is_text(text):
                    raise ValueError(f"{name}: not valid text (a lone surrogate such as \\ud800)")
        return self


def is_text(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (JSON lets a client send lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Hit(BaseModel):
    rank: int
    score: float = Field(description="cosine (semantic), BM25 (lexical) or fusion score (hybrid)")
    id: str = Field(description="the point id: a UUID")
    modality: str = Field(description="the vector that found it: abc, mtf, text, hybrid or lexical")
    title: str | None = None
    composer: str | None = None
    source: str | None = None
    corpus: str | None = None
    payload: dict[str, Any]


class SearchResponse(BaseModel):
    hits: list[Hit]
    mode: str = Field(description="how the query was matched")
    why: str | None = Field(None, description="why there are no hits, when a filter is the reason")
    notices: list[str] | None = Field(None, description="e.g. that the collection has no lexical index")


def _has_words(text: str) -> str:
    if not text.strip(" \t\r\n\x00"):
        raise ValueError("a text is empty")
    return text


class EmbedTextRequest(BaseModel):
    texts: list[
        Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS), AfterValidator(_has_words)]
    ] = Field(min_length=1, max_length=MAX_TEXTS)
    collection: str | None = Field(None, max_length=255)

    @model_validator(mode="after")
    def _volume(self) -> EmbedTextRequest:
        if sum(map(len, self.texts)) > MAX_TEXT_VOLUME:
            raise ValueError(
                f"the texts are over {MAX_TEXT_VOLUME:,} characters together (send them in parts)"
            )
        return self


class ModelInfo(BaseModel):
    name: str | None
    checkpoint_sha256: str | None
    dim: int


class EmbedResponse(BaseModel):
    vectors: list[list[float]]
    model: ModelInfo


class Health(BaseModel):
    status: Literal["ok", "starting", "waiting", "failed"]
    collection: str
    store: str | None = None
    model: str | None = None
    error: str | None = Field(None, description="why the server cannot serve (failed) or not yet (waiting)")
    audio: str | None = Field(None, description='"ok", or why pieces cannot be played here')
    query_model: str | None = Field(
        None, description='what encodes text queries, e.g. "torch bf16", "onnx int8"'
    )


class CollectionRow(BaseModel):
    name: str
    points: int | None = Field(description="null for an embedded collection another process holds")
    model: str | None
    dim: int | None
    created: str | None


class Collections(BaseModel):
    collections: list[CollectionRow]


class Facet(BaseModel):
    value: str = Field(examples=["J.S. Bach"])
    count: int


class CollectionInfo(BaseModel):
    """A collection's engine facts and model record (more fields than these, per engine)."""

    model_config = ConfigDict(extra="allow")

    name: str
    points: int
    vectors: dict[str, int]
    dim: int
    lexical: bool = False
    facets: dict[str, list[Facet]]


class Piece(BaseModel):
    id: str
    collection: str
    payload: dict[str, Any]
    abc: str | None = Field(None, description="the piece's ABC, when its source is ABC")


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Error} for code in (400, 401, 404, 408, 413, 415, 422, 500, 503)
}
