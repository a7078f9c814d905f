"""A scripted OpenAI chat-completions server on 127.0.0.1, for tests and benchmarks.

Each request is keyed by a field of the piece's metadata (the last user message, JSON; ``title`` by
default) and answered by the step of that key's script for this attempt (the last step repeats):

- ``"valid"`` (the default), ``"fenced"`` (valid, in a Markdown code fence), ``"none"`` (the word None),
  ``"wrong_language"``, ``"invalid_json"``, ``"bad_shape"`` (no ``summary_nen``);
- ``{"status": 429, "retry_after": 1}`` (or ``retry_after_ms``), ``{"status": 500}``, any status;
- ``{"sleep": 2.0}`` (answer valid after 2 s; ``"then"`` names another step), ``"drop"`` (close the
  connection without answering), ``"echo_auth"`` (400 whose message repeats the Authorization header);
- replies that are no usable answer: ``"non_json_body"`` (HTTP 200, an HTML page), ``"choices_string"``
  (``"choices": "nope"``), ``"content_number"`` (message content 42), ``"echo_key"`` (a valid answer whose
  ``summary_en`` repeats the Authorization header); ``{"drip": 0.15}`` sends a valid answer one byte every
  0.15 s after the headers.

In process: ``with ScriptedLLM({"A": ["valid"]}) as llm: ... llm.base_url ... llm.attempts("A")``.
As a subprocess: ``python -m tests.llm_server [--latency S] [--script FILE.json]`` prints its base URL
on the first line of stdout and serves until terminated.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

Step = str | dict[str, Any]
DRIP = "X-Test-Drip"  # internal: send the body a byte at a time, this many seconds apart
USAGE = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}


def valid_answer(key: str, language: str) -> dict[str, Any]:
    """The summaries the server writes for a valid step (deterministic in key and language)."""
    return {
        "summary_en": f"Summary of {key}.",
        "summary_nen": {"language": language, "summary": f"({language}) {key}"},
    }


class ScriptedLLM:
    """The server; a context manager that serves from a background thread on a free port."""

    def __init__(
        self,
        script: dict[str, list[Step]] | None = None,
        *,
        latency: float = 0.0,
        hold_after: int | None = None,
        key_field: str = "title",
        default: Step = "valid",
        port: int = 0,
    ):
        self.script = dict(script or {})
        self.latency, self.key_field, self.default, self.port = latency, key_field, default, port
        self.log: list[dict[str, Any]] = []
        self._attempts: Counter[str] = Counter()
        self.in_flight = self.max_in_flight = 0
        # after this many requests, later ones hang until the server stops (a client to kill mid-run)
        self.hold_after, self.released = hold_after, threading.Event()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def attempts(self, key: str) -> int:
        with self._lock:
            return self._attempts[key]

    def requests(self) -> int:
        with self._lock:
            return sum(self._attempts.values())

    def start(self) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self), bind_and_activate=False)
        server.daemon_threads = True
        server.request_queue_size = 256
        server.server_bind()
        server.server_activate()
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="scripted-llm", daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        self.released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ScriptedLLM:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- answering --------------------------------------------------------------------------------
    def answer(self, body: dict[str, Any], auth: str) -> tuple[int, dict[str, str], dict[str, Any] | None]:
        """(status, headers, JSON body or None to drop the connection) for one request."""
        content = body["messages"][-1]["content"]
        try:
            meta = json.loads(content)
        except ValueError:
            meta = {}
        key = str(meta.get(self.key_field) or hashlib.sha256(content.encode()).hexdigest()[:12])
        language = str(meta.get("nen_language", "French"))
        with self._lock:
            attempt = self._attempts[key]
            self._attempts[key] += 1
            steps = self.script.get(key) or [self.default]
            step = steps[min(attempt, len(steps) - 1)]
            self.log.append(
                {
                    "key": key,
                    "attempt": attempt,
                    "step": step,
                    "language": language,
                    "model": body.get("model"),
                    "authorization": auth,
                    "time": time.monotonic(),
                }
            )
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            hold = self.hold_after is not None and len(self.log) > self.hold_after
        if hold:
            self.released.wait(300)
        try:
            return self._respond(step, key, language, body, auth)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _respond(
        self, step: Step, key: str, language: str, body: dict[str, Any], auth: str
    ) -> tuple[int, dict[str, str], dict[str, Any] | None]:
        if self.latency:
            time.sleep(self.latency)
        if isinstance(step, dict) and "sleep" in step:
            time.sleep(float(step["sleep"]))
            step = step.get("then", "valid")
        if isinstance(step, dict) and "drip" in step:
            return (
                200,
                {DRIP: str(step["drip"])},
                _completion(body.get("model", "test"), _text("valid", key, language)),
            )
        if isinstance(step, dict):
            headers = {}
            if "retry_after" in step:
                headers["Retry-After"] = str(step["retry_after"])
            if "retry_after_ms" in step:
                headers["retry-after-ms"] = str(step["retry_after_ms"])
            status = int(step.get("status", 500))
            return (
                status,
                headers,
                {"error": {"message": step.get("message", f"scripted {status}"), "type": "test"}},
            )
        if step == "drop":
            return 0, {}, None
        if step == "echo_auth":
            return 400, {}, {"error": {"message": f"rejected request with header {auth}", "type": "test"}}
        if step == "non_json_body":
            return (
                200,
                {"Content-Type": "text/html"},
                b"<html><body>Service temporarily unavailable</body></html>",
            )
        if step == "choices_string":
            return 200, {}, {**_completion(body.get("model", "test"), ""), "choices": "nope"}
        if step == "content_number":
            done = _completion(body.get("model", "test"), "")
            done["choices"][0]["message"]["content"] = 42
            return 200, {}, done
        if step == "echo_key":
            answer = {**valid_answer(key, language), "summary_en": f"Summary of {key}, sent with {auth}."}
            return 200, {}, _completion(body.get("model", "test"), json.dumps(answer))
        return 200, {}, _completion(body.get("model", "test"), _text(step, key, language))


def _text(step: str, key: str, language: str) -> str:
    valid = json.dumps(valid_answer(key, language), ensure_ascii=False)
    if step == "fenced":
        return f"Here you are:\n```json\n{valid}\n```"
    if step == "none":
        return "None"
    if step == "wrong_language":
        other = "German" if language != "German" else "French"
        return json.dumps(
            {"summary_en": f"Summary of {key}.", "summary_nen": {"language": other, "summary": "x"}}
        )
    if step == "invalid_json":
        return '{"summary_en": "Summary of ' + key + ', "summary_nen": {'
    if step == "bad_shape":
        return json.dumps({"summary_en": f"Summary of {key}."})
    if step != "valid":
        raise ValueError(f"unknown scripted step {step!r}")
    return valid


def _completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": dict(USAGE),
    }


def _handler_for(llm: ScriptedLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go in two writes; no 40 ms delayed-ACK stall

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, headers: dict[str, str], payload: dict[str, Any] | bytes) -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            headers = dict(headers)
            drip = float(headers.pop(DRIP, 0) or 0)
            try:
                self.send_response(status)
                self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                if not drip:
                    self.wfile.write(data)
                for i in range(len(data) if drip else 0):  # bounded: one body, then done
                    self.wfile.write(data[i : i + 1])
                    self.wfile.flush()
                    time.sleep(drip)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                self.close_connection = True

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                return self._send(200, {}, {"object": "list", "data": [{"id": "test", "object": "model"}]})
            self._send(404, {}, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not self.path.rstrip("/").endswith("/chat/completions"):
                return self._send(404, {}, {"error": {"message": f"no route {self.path}"}})
            try:
                status, headers, payload = llm.answer(json.loads(body), self.headers.get("Authorization", ""))
            except (ValueError, KeyError, TypeError) as exc:
                return self._send(400, {}, {"error": {"message": f"bad request: {exc}"}})
            if payload is None:
                self.close_connection = True
                self.connection.close()
                return
            self._send(status, headers, payload)

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument("--script", help="JSON file: {key: [step, ...]}")
    args = parser.parse_args(argv)
    script = json.loads(Path(args.script).read_text(encoding="utf-8")) if args.script else None
    llm = ScriptedLLM(script, latency=args.latency, port=args.port)
    print(llm.start(), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        llm.stop()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
