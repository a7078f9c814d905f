"""``GET /metrics`` in Prometheus's text format (``prometheus-client``): requests by route and status,
their latency, micro-batch sizes, render cache hits and conversions given up. One registry per app."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest


class Metrics:
    """The server's counters; :meth:`middleware` observes every request."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "clamp2_requests", "HTTP requests", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "clamp2_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "clamp2_text_batch_size",
            "texts per forward pass of the text tower (cross-request micro-batches)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.renders = Counter(
            "clamp2_renders", "score, piano roll and MIDI renderings", ["result"], registry=self.registry
        )
        self.conversions_given_up = Counter(
            "clamp2_conversions_given_up",
            "renderings and uploads whose worker was killed (time or memory limit) or died",
            registry=self.registry,
        )

    def middleware(self, app: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        """ASGI middleware observing every request (``app.add_middleware(metrics.middleware)``)."""

        async def observed(scope: dict, receive: Callable, send: Callable) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started, status = time.perf_counter(), [500]

            async def send_status(message: dict) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_status)
            finally:
                route = scope.get("route")
                name = getattr(route, "path", None) or "unmatched"  # the route's template: bounded labels
                self.requests.labels(name, scope["method"], str(status[0])).inc()
                self.latency.labels(name).observe(time.perf_counter() - started)

        return observed

    def exposition(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
