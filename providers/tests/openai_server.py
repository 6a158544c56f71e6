"""A real OpenAI-compatible HTTP server for tests, on 127.0.0.1 in a background thread.

Tests script what the next chat completions do (`server.enqueue(answer(...), rate_limited(...))`);
with nothing queued it answers normally. `POST /v1/embeddings` (OpenAI's shape, what
providers.clients.embed sends) answers deterministic vectors (`text_vector`, or ones a test set with
`set_embeddings`) and takes the same queue's failures (status, malformed, slow). Every request is
recorded (path, headers, JSON body) so tests can assert what the provider layer actually sent.
"""

import hashlib
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
    # Streamed answers (a request with `stream: true`): one chunk per word, this many seconds apart;
    # `cut_after` chunks, then the connection closes with no end (a provider failing mid-stream).
    chunk_delay: float = 0.0
    cut_after: int | None = None


def answer(text: str = "Hello from the test server.", *, usage: bool = True, model: str | None = None) -> Behaviour:
    return Behaviour("answer", text=text, usage=usage, model=model)


def streamed(text: str = "Hello from the test server.", *, chunk_delay: float = 0.0, usage: bool = True) -> Behaviour:
    """An answer that, asked for a stream, comes one word per chunk, `chunk_delay` seconds apart."""
    return Behaviour("answer", text=text, chunk_delay=chunk_delay, usage=usage)


def broken_stream(text: str = "This answer stops", *, after: int = 2) -> Behaviour:
    """A stream that sends `after` chunks, then drops the connection without finishing."""
    return Behaviour("answer", text=text, cut_after=after)


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


EMBEDDING_DIMENSIONS = 8


def text_vector(text: str) -> list[float]:
    """The test server's embedding of a text: from its SHA-256, so the same text has the same vector."""
    digest = hashlib.sha256(text.encode()).digest()
    return [byte / 127.5 - 1.0 for byte in digest[:EMBEDDING_DIMENSIONS]]


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
    # Embeddings a test chose, by text; other texts get text_vector(text).
    embeddings: dict[str, list[float]] = field(default_factory=dict)


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

    def set_embeddings(self, vectors: dict[str, list[float]]) -> None:
        """The vectors `POST /v1/embeddings` answers for these texts (others: text_vector)."""
        with self.state.lock:
            self.state.embeddings.update(vectors)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self.state.lock:
            return list(self.state.requests)

    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def embedding_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/embeddings")]

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
        if self.path == "/v1/embeddings":
            self._embeddings(body)
            return
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
        usage = self._usage(body, behaviour) if behaviour.usage else None
        if isinstance(body, dict) and body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._stream(behaviour, model, usage if include_usage else None)
            return
        if usage is not None:
            completion["usage"] = usage
        self._send(200, json.dumps(completion))

    def _embeddings(self, body: Any) -> None:
        """OpenAI's embedding list for `input` (a string or a list of strings); a queued failure
        (status, malformed, slow) applies to it as to a chat completion."""
        with self.shared.lock:
            behaviour = self.shared.behaviours.popleft() if self.shared.behaviours else self.shared.default
            chosen = dict(self.shared.embeddings)
        if behaviour.delay and self.shared.stopping.wait(behaviour.delay):
            return
        if behaviour.kind in ("status", "malformed"):
            self._send(behaviour.status, behaviour.body, behaviour.headers)
            return
        texts = body.get("input") if isinstance(body, dict) else None
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
            self._send(422, json.dumps({"error": {"message": "`input` must be a string or a list of strings."}}))
            return
        data = [
            {"object": "embedding", "index": index, "embedding": chosen.get(text) or text_vector(text)}
            for index, text in enumerate(texts)
        ]
        tokens = sum(len(text.split()) for text in texts)
        model = body.get("model") or "test-model"
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        self._send(200, json.dumps({"object": "list", "data": data, "model": model, "usage": usage}))

    def _usage(self, body: Any, behaviour: Behaviour) -> dict[str, int]:
        if self.shared.usage_fn is not None:
            prompt_tokens, completion_tokens = self.shared.usage_fn(body or {}, behaviour.text)
        else:
            messages = (body or {}).get("messages", [])
            prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
            completion_tokens = len(behaviour.text.split())
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    def _stream(self, behaviour: Behaviour, model: str, usage: dict[str, int] | None) -> None:
        """Server-sent events as OpenAI sends them: a chunk per word, a final one with the finish
        reason, the usage chunk (no choices) when asked for, then `[DONE]`."""
        words = behaviour.text.split(" ")
        pieces = [word if index == 0 else f" {word}" for index, word in enumerate(words)]

        def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return {
                "id": "cmpl-test",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [choice],
            }

        events = [chunk({"role": "assistant", "content": piece}, None) for piece in pieces]
        events.append(chunk({}, behaviour.finish_reason))
        if usage is not None:
            events.append(
                {
                    "id": "cmpl-test",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            for index, event in enumerate(events):
                if behaviour.cut_after is not None and index >= behaviour.cut_after:
                    break
                if index and behaviour.chunk_delay and self.shared.stopping.wait(behaviour.chunk_delay):
                    break
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
            else:
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away mid-stream
        self.close_connection = True


def main() -> None:
    """`python -m providers.tests.openai_server [--models a,b]`: serves on a free port, prints its
    base URL on the first line, and answers every chat completion until killed (.ci/schemathesis.sh's
    provider, so that gateway calls get an answer)."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--models", default="test-model", help="Comma-separated ids its /v1/models lists.")
    args = parser.parse_args()
    server = OpenAIServer().start()
    server.set_models([model for model in args.models.split(",") if model])
    print(server.url, flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.stop()


if __name__ == "__main__":
    main()
