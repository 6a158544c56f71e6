"""A real OpenAI-compatible HTTP server for tests, on 127.0.0.1 in a background thread.

Tests script what the next chat completions do (`server.enqueue(answer(...), rate_limited(...))`);
with nothing queued it answers normally. Every request is recorded (path, headers, JSON body) so
tests can assert what the provider layer actually sent.
"""

import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Behaviour:
    """What the server does with one chat completion request."""

    kind: str  # answer | slow | status | malformed | no_choices
    text: str = "Hello from the test server."
    usage: bool = True
    delay: float = 0.0
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""
    model: str | None = None  # reported model; None echoes the requested one
    finish_reason: str = "stop"


def answer(text: str = "Hello from the test server.", *, usage: bool = True, model: str | None = None) -> Behaviour:
    return Behaviour("answer", text=text, usage=usage, model=model)


def slow(seconds: float, text: str = "Late answer.") -> Behaviour:
    return Behaviour("slow", text=text, delay=seconds)


def rate_limited(retry_after: str | None = "7") -> Behaviour:
    headers = (("Retry-After", retry_after),) if retry_after is not None else ()
    body = json.dumps({"error": {"message": "Rate limit reached.", "type": "rate_limit_error"}})
    return Behaviour("status", status=429, headers=headers, body=body)


def server_error(status: int = 500, message: str = "Internal error.") -> Behaviour:
    return Behaviour("status", status=status, body=json.dumps({"error": {"message": message}}))


def model_not_found(model: str = "missing-model") -> Behaviour:
    body = json.dumps({"error": {"message": f"The model `{model}` does not exist.", "type": "NotFoundError"}})
    return Behaviour("status", status=404, body=body)


def error(status: int, body: str) -> Behaviour:
    return Behaviour("status", status=status, body=body)


def malformed() -> Behaviour:
    return Behaviour("malformed", body='{"choices": [{"message": ')


def no_choices() -> Behaviour:
    return Behaviour("no_choices")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None


@dataclass
class _State:
    behaviours: deque[Behaviour] = field(default_factory=deque)
    requests: list[RecordedRequest] = field(default_factory=list)
    # None makes GET /v1/models answer 404, like a server without a listing.
    models: list[str] | None = field(default_factory=lambda: ["test-model"])
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    # What a request does when nothing is enqueued.
    default: Behaviour = field(default_factory=lambda: answer())
    # Reported usage (prompt_tokens, completion_tokens) from the request body and the answer's text;
    # None: one token per whitespace-separated word.
    usage_fn: Callable[[dict[str, Any], str], tuple[int, int]] | None = None


class OpenAIServer:
    """Start with `start()` (or as a context manager); `url` is the base URL, ending in /v1."""

    def __init__(self) -> None:
        self.state = _State()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # scripting

    def enqueue(self, *behaviours: Behaviour) -> None:
        with self.state.lock:
            self.state.behaviours.extend(behaviours)

    def set_default(self, behaviour: Behaviour) -> None:
        """What every request does when nothing is enqueued (by default: answer())."""
        self.state.default = behaviour

    def set_usage(self, usage_fn: Callable[[dict[str, Any], str], tuple[int, int]] | None) -> None:
        """How the reported usage is counted: (request body, answer text) -> (prompt, completion) tokens."""
        self.state.usage_fn = usage_fn

    def set_models(self, models: list[str] | None) -> None:
        self.state.models = models

    @property
    def requests(self) -> list[RecordedRequest]:
        with self.state.lock:
            return list(self.state.requests)

    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    # lifecycle

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "OpenAIServer":
        state = self.state

        class Handler(_Handler):
            shared = state

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True  # a slow handler must not hold up stop()
        # A short poll interval keeps stop() (which waits for the next poll) fast.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="openai-test-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.state.stopping.set()  # wakes handlers sleeping in a `slow` behaviour
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "OpenAIServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    shared: _State
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def _record(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        request = RecordedRequest(
            method=self.command,
            path=self.path,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )
        with self.shared.lock:
            self.shared.requests.append(request)
        return body

    def _send(self, status: int, body: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        data = body.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    def do_GET(self) -> None:
        self._record()
        if self.path.rstrip("/") != "/v1/models" or self.shared.models is None:
            self._send(404, json.dumps({"error": {"message": "Not found."}}))
            return
        data = [{"id": model, "object": "model", "owned_by": "test"} for model in self.shared.models]
        self._send(200, json.dumps({"object": "list", "data": data}))

    def do_POST(self) -> None:
        body = self._record()
        if self.path != "/v1/chat/completions":
            self._send(404, json.dumps({"error": {"message": "Not found."}}))
            return
        with self.shared.lock:
            behaviour = self.shared.behaviours.popleft() if self.shared.behaviours else self.shared.default
        if behaviour.delay and self.shared.stopping.wait(behaviour.delay):
            return
        if behaviour.kind in ("status", "malformed"):
            self._send(behaviour.status, behaviour.body, behaviour.headers)
            return
        requested = body.get("model") if isinstance(body, dict) else None
        model = behaviour.model or requested or "test-model"
        if behaviour.kind == "no_choices":
            self._send(200, json.dumps({"id": "cmpl-test", "object": "chat.completion", "model": model}))
            return
        completion: dict[str, Any] = {
            "id": "cmpl-test",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": behaviour.text},
                    "finish_reason": behaviour.finish_reason,
                }
            ],
        }
        if behaviour.usage:
            if self.shared.usage_fn is not None:
                prompt_tokens, completion_tokens = self.shared.usage_fn(body or {}, behaviour.text)
            else:
                messages = (body or {}).get("messages", [])
                prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
                completion_tokens = len(behaviour.text.split())
            completion["usage"] = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }
        self._send(200, json.dumps(completion))
