"""The HTTP API and the search page (FastAPI). Every client error is a 4xx with ``{"error": "one line"}``;
nothing a client sends produces a traceback, in the response or in the log."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from clamp2_engine.errors import CollectionError, CollectionNotFoundError, StoreError, first_line
from clamp2_engine.serve.render import RenderError
from clamp2_engine.serve.service import PieceNotFound, ServeConfig, Service
from clamp2_engine.session import Query, Result
from clamp2_engine.store import parse_filters

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD = 8 * 2**20
MAX_TEXTS = 256
MAX_TEXT_CHARS = 4096
# the page and the API docs carry no data (the page's API calls carry the key)
OPEN_PATHS = ("/", "/favicon.ico", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")
log = logging.getLogger("clamp2_engine.serve")

Modality = Literal["any", "abc", "mtf", "text"]
Mode = Literal["hybrid", "semantic", "lexical"]


class SearchRequest(BaseModel):
    query: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    k: int = Field(10, ge=1, le=1000)
    modality: Modality = "any"
    mode: Mode = Field("hybrid", description="hybrid: meaning and words; semantic: CLaMP 2; lexical: BM25")
    lexical_weight: float | None = Field(None, ge=0, le=100, description="hybrid: words against meaning's 1")
    filters: list[str] = Field(default_factory=list, max_length=32)
    like: list[str] = Field(default_factory=list, max_length=32)
    unlike: list[str] = Field(default_factory=list, max_length=32)
    offset: int = Field(0, ge=0, le=10_000)
    collection: str | None = None
    diverse: bool = False


class EmbedTextRequest(BaseModel):
    texts: list[Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]] = Field(
        min_length=1, max_length=MAX_TEXTS
    )
    collection: str | None = None


def error(status: int, message: str) -> HTTPException:
    return HTTPException(status, message)


def _query(req: SearchRequest, text: bool = True) -> Query:
    """The library's query for a request; 400 for one that cannot run."""
    query = req.query if text and req.query and req.query.strip(" \t\r\n\x00") else None
    if text and query is None and not req.like:
        raise error(400, "give a query, or like (point ids), or both")
    try:
        parse_filters(req.filters)
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
        raise error(400, first_line(exc)) from None


async def _upload(file: UploadFile) -> Path:
    """The upload in a temporary file with its suffix (size-limited); the caller deletes it."""
    suffix = Path(file.filename or "").suffix.lower()
    if not suffix or len(suffix) > 10 or not suffix[1:].isalnum():
        raise error(
            415, "the upload needs a file name with a music suffix (.mid .xml .mxl .abc .krn .mtf ...)"
        )
    data = await file.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise error(413, f"the upload is over {MAX_UPLOAD // 2**20} MiB")
    if not data:
        raise error(400, "the upload is empty")
    with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as fh:
        fh.write(data)
    return Path(fh.name)


def create_app(config: ServeConfig, service: Service | None = None) -> FastAPI:
    """The application; ``service`` (default: a new one for ``config``) is opened and warmed at start-up."""
    svc = service or Service(config)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        await asyncio.to_thread(svc.warm)
        yield
        svc.close()

    app = FastAPI(title="clamp2-engine", summary="CLaMP 2 music search", lifespan=lifespan)
    app.state.service = svc
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if (
            config.api_key
            and request.url.path not in OPEN_PATHS
            and not request.url.path.startswith("/static/")
        ):
            given = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix(
                "Bearer "
            )
            if not hmac.compare_digest(given.encode(), config.api_key.encode()):
                return JSONResponse(
                    {"error": "missing or wrong API key (X-API-Key or Authorization: Bearer)"}, 401
                )
        size = request.headers.get("content-length")
        if size and (not size.isdigit() or int(size) > config.max_body):
            return JSONResponse({"error": f"the request body is over {config.max_body // 2**20} MiB"}, 413)
        try:
            return await asyncio.wait_for(call_next(request), config.request_timeout)
        except TimeoutError:
            return JSONResponse(
                {"error": f"the request took longer than {config.request_timeout:.0f} s"}, 503
            )

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException):
        return JSONResponse({"error": str(exc.detail)}, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}".strip(": ")}, 422)

    @app.exception_handler(CollectionNotFoundError)
    @app.exception_handler(PieceNotFound)
    async def not_found(_request: Request, exc: Exception):
        return JSONResponse({"error": first_line(exc)}, 404)

    @app.exception_handler(CollectionError)
    @app.exception_handler(RenderError)
    async def unprocessable(_request: Request, exc: Exception):
        return JSONResponse({"error": first_line(exc)}, 422)

    @app.exception_handler(StoreError)
    async def unavailable(_request: Request, exc: Exception):
        return JSONResponse({"error": first_line(exc)}, 503)

    @app.exception_handler(Exception)
    async def internal(_request: Request, exc: Exception):
        log.exception("internal error")  # a server fault: the traceback belongs in the log
        return JSONResponse({"error": "internal error (see the server's log)"}, 500)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        coll = svc.collection()
        return {
            "status": "ok",
            "collection": coll.name,
            "store": svc.store.describe(),
            "model": coll.record.model.get("name"),
        }

    def answer(result: Result) -> dict[str, Any]:
        out: dict[str, Any] = {"hits": [h.as_dict() for h in result.hits], "mode": result.mode}
        if result.why:
            out["why"] = result.why
        if result.notices:
            out["notices"] = result.notices
        return out

    @app.post("/search")
    async def search(req: SearchRequest) -> dict[str, Any]:
        query = _query(req)
        session = svc.session(req.collection)  # an unknown collection is a 404 before any encoding
        planned, _notices = session.plan(query)
        text = planned.text if planned.needs_text_vector else None
        vector = (await svc.encode_text([text], req.collection))[0] if text else None
        return answer(await asyncio.to_thread(svc.search, query, vector, req.collection))

    async def music_input(file: UploadFile) -> str:
        from clamp2_engine.ingest.corpus import music_query_input

        path = await _upload(file)
        try:
            _modality, data = await asyncio.to_thread(music_query_input, path)
        except ValueError as exc:
            raise error(422, first_line(exc).replace(path.name, file.filename or "upload")) from None
        finally:
            path.unlink(missing_ok=True)
        return data

    @app.post("/search/music")
    async def search_music(
        file: UploadFile = File(...),
        k: int = Form(10),
        modality: Modality = Form("any"),
        filters: list[str] = Form([]),
        offset: int = Form(0),
        collection: str | None = Form(None),
        diverse: bool = Form(False),
    ) -> dict[str, Any]:
        try:
            req = SearchRequest(
                k=k, modality=modality, filters=filters, offset=offset, collection=collection, diverse=diverse
            )
        except ValueError as exc:
            raise RequestValidationError(getattr(exc, "errors", lambda: [])()) from None
        query = _query(req, text=False)
        svc.collection(req.collection)
        vector = await svc.encode_music(await music_input(file), req.collection)
        return answer(await asyncio.to_thread(svc.search, query, vector, req.collection))

    def model_info(name: str | None) -> dict[str, Any]:
        coll = svc.collection(name)
        return {
            "name": coll.record.model.get("name"),
            "checkpoint_sha256": coll.record.model.get("checkpoint_sha256"),
            "dim": coll.record.dim,
        }

    @app.post("/embed/text")
    async def embed_text(req: EmbedTextRequest) -> dict[str, Any]:
        vectors = await svc.encode_text(req.texts, req.collection)
        return {"vectors": vectors.tolist(), "model": model_info(req.collection)}

    @app.post("/embed/music")
    async def embed_music(
        file: UploadFile = File(...), collection: str | None = Form(None)
    ) -> dict[str, Any]:
        svc.collection(collection)
        vector = await svc.encode_music(await music_input(file), collection)
        return {"vectors": [vector.tolist()], "model": model_info(collection)}

    @app.get("/collections")
    async def collections() -> dict[str, Any]:
        return {"collections": await asyncio.to_thread(svc.locked, svc.store.list)}

    @app.get("/collections/{name}")
    async def collection(name: str) -> dict[str, Any]:
        return await asyncio.to_thread(svc.info, name)

    @app.get("/pieces/{pid}")
    async def piece(pid: str, collection: str | None = None) -> dict[str, Any]:
        found = svc.piece(pid, collection)
        p = found["payload"]
        if str((p.get("sources") or {}).get("abc", "")).lower().endswith(".abc"):
            with contextlib.suppress(PieceNotFound, OSError):
                found["abc"] = svc.piece_file(found, "abc").read_text(encoding="utf-8", errors="replace")[
                    :200_000
                ]
        return found

    @app.get("/pieces/{pid}/score.svg")
    async def score(pid: str, collection: str | None = None) -> Response:
        found = svc.piece(pid, collection)
        path = svc.piece_file(found, "abc")
        svg = await asyncio.to_thread(svc.renderer.svg, path, str(found["payload"].get("part") or ""))
        return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "max-age=3600"})

    @app.get("/pieces/{pid}/midi")
    async def midi(pid: str, collection: str | None = None) -> Response:
        found = svc.piece(pid, collection)
        path = svc.piece_file(found, "mtf")
        data = await asyncio.to_thread(svc.renderer.midi, path, str(found["payload"].get("part") or ""))
        name = (Path(str(found["payload"].get("source") or pid)).stem or "piece") + ".mid"
        return Response(
            data, media_type="audio/midi", headers={"Content-Disposition": f'attachment; filename="{name}"'}
        )

    return app
