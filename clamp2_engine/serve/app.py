"""The HTTP API and the search page (FastAPI): :func:`create_app` assembles the routers
(:mod:`clamp2_engine.serve.routes`), the guard and the error handlers (:mod:`.errors`) around a
:class:`~clamp2_engine.serve.service.Service`."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from clamp2_engine.serve import errors
from clamp2_engine.serve.routes import collections, docs, embed, page, pieces, search
from clamp2_engine.serve.service import ServeConfig, Service


def create_app(config: ServeConfig, service: Service | None = None) -> FastAPI:
    """The application; ``service`` (default: a new one for ``config``) is opened and warmed at start-up."""
    svc = service or Service(config)
    mcp_running: list = []  # /mcp's session manager, when the mcp package is installed

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        # the port answers at once: /healthz says "starting" (503) until the model and store are ready
        warming = asyncio.get_running_loop().run_in_executor(None, svc.warm)
        async with mcp_running[0]() if mcp_running else contextlib.nullcontext():
            yield
        svc.stopping.set()  # a wait for a collection in use ends now
        await warming  # a server stopped while loading lets the load end before closing the store
        svc.close()

    app = FastAPI(
        title="clamp2-engine",
        summary="CLaMP 2 music search",
        lifespan=lifespan,
        docs_url=None,  # served by routes/docs.py with local assets
        redoc_url=None,
        max_body_size=config.max_body,  # counted as the body is read, chunked or not
    )
    app.state.service = svc
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )
    app.add_middleware(errors.BodyDeadline, seconds=config.body_timeout)  # inside: its 408s are counted
    app.add_middleware(errors.Guard, svc=svc)
    app.add_middleware(svc.metrics.middleware)
    app.add_middleware(errors.HeadAsGet)
    errors.install(app)
    for module in (page, search, embed, collections, pieces):
        app.include_router(module.router)
    docs.install(app)
    if config.mcp:
        from clamp2_engine.serve import mcp

        mcp_running.extend(filter(None, [mcp.install(app, svc, config.public_url)]))
    app.mount("/static", StaticFiles(directory=page.STATIC), name="static")
    return app
