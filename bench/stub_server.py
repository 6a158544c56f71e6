"""A fast OpenAI-compatible upstream for the gateway benchmarks (bench/gateway.py), on 127.0.0.1.

    .venv/bin/python bench/stub_server.py --port 9100 [--latency-ms 0] [--chunk-interval-ms 10] [--impl asyncio]

- `POST /v1/chat/completions` answers every request after --latency-ms with a fixed answer and its
  usage, echoing the requested model. With `"stream": true` it sends Server-Sent Events: the first
  content chunk after --latency-ms, the others --chunk-interval-ms apart (so a proxy that buffers the
  stream shows in its time to first token), the finish chunk, a usage chunk when
  `stream_options.include_usage` is set, and `data: [DONE]`.
- `GET /v1/models` lists --models (default `stub-model`).
- `GET /stats` answers how many chat completions were served, so a bench can check that a proxy
  reached this upstream.

HTTP/1.1 with keep-alive. `--impl asyncio` (the default) is a raw asyncio protocol with no dependency:
one process serves several thousand requests per second on one core. `--impl uvicorn` serves the
same answers as a minimal ASGI app under uvicorn, for comparing the two (bench/README.md has the
figures: `wrk` against each, the same run).

Not a general HTTP server: requests are read one at a time per connection, bodies need a
Content-Length (or chunked encoding), and anything else answers 404.
"""

import argparse
import asyncio
import collections
import json
import sys
import time

ANSWER = "Hello from the stub."
STREAM_PIECES = ["Hello", " from", " the", " stub", "."]
PROMPT_TOKENS = 12
COMPLETION_TOKENS = 6
SERVED = {"chat": 0, "stream": 0}


def _usage() -> dict:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    }


_completion_cache: dict[str, bytes] = {}


def completion_body(model: str) -> bytes:
    """The JSON answer for `model` (cached: the id and timestamp do not matter to any client here)."""
    body = _completion_cache.get(model)
    if body is None:
        body = json.dumps(
            {
                "id": "chatcmpl-stub",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
                "usage": _usage(),
            },
            separators=(",", ":"),
        ).encode()
        _completion_cache[model] = body
    return body


def stream_events(model: str, *, include_usage: bool) -> list[bytes]:
    """The SSE events of a streamed answer, each a complete `data: ...\\n\\n`."""
    created = int(time.time())

    def chunk(delta: dict, finish: str | None, **extra: object) -> bytes:
        data = {
            "id": "chatcmpl-stub",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        if include_usage and "usage" not in extra:
            data["usage"] = None  # as OpenAI does: null on every chunk but the last
        return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"

    events = [chunk({"role": "assistant", "content": STREAM_PIECES[0]}, None)]
    events += [chunk({"content": piece}, None) for piece in STREAM_PIECES[1:]]
    events.append(chunk({}, "stop"))
    if include_usage:
        data = {
            "id": "chatcmpl-stub",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": _usage(),
        }
        events.append(b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


def models_body(models: list[str]) -> bytes:
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "stub"} for m in models]
    return json.dumps({"object": "list", "data": data}).encode()


def parse_chat(body: bytes) -> tuple[str, bool, bool] | None:
    """(model, stream, include_usage) of a chat request, or None when it is not a JSON object with a model."""
    try:
        request = json.loads(body)
        model = request["model"]
    except (ValueError, KeyError, TypeError):
        return None
    options = request.get("stream_options") or {}
    return str(model), bool(request.get("stream")), bool(isinstance(options, dict) and options.get("include_usage"))


# --- asyncio: a raw protocol ----------------------------------------------------------------------

STATUS_TEXT = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}


def _response(status: int, body: bytes, *, close: bool = False) -> bytes:
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
        % (status, STATUS_TEXT[status], len(body), b"Connection: close\r\n" if close else b"")
    ) + body


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class StubProtocol(asyncio.Protocol):
    """One connection: requests parsed from the buffer and answered in order, one at a time."""

    def __init__(self, config: argparse.Namespace) -> None:
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.buffer = bytearray()
        self.requests: collections.deque[tuple[bytes, bytes, bytes, bool]] = collections.deque()
        self.busy = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self._parse_one():
            pass
        if not self.busy:
            self._next()

    def _parse_one(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buffer[:end]).split(b"\r\n")
        start = end + 4
        parts = head[0].split(b" ")
        if len(parts) != 3:
            self._fail()
            return False
        method, target = parts[0], parts[1]
        length, chunked, close = 0, False, parts[2] == b"HTTP/1.0"
        for line in head[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = value.strip().lower() == b"close"
        if chunked:
            decoded = self._dechunk(start)
            if decoded is None:
                return False
            body, consumed = decoded
        else:
            if len(self.buffer) < start + length:
                return False
            body, consumed = bytes(self.buffer[start : start + length]), start + length
        del self.buffer[:consumed]
        self.requests.append((method, target.split(b"?", 1)[0], body, close))
        return True

    def _dechunk(self, position: int) -> tuple[bytes, int] | None:
        body = bytearray()
        while True:
            line_end = self.buffer.find(b"\r\n", position)
            if line_end < 0:
                return None
            size = int(bytes(self.buffer[position:line_end]).split(b";")[0], 16)
            position = line_end + 2
            if size == 0:
                trailer_end = self.buffer.find(b"\r\n", position)  # no trailers expected
                return (bytes(body), trailer_end + 2) if trailer_end >= 0 else None
            if len(self.buffer) < position + size + 2:
                return None
            body += self.buffer[position : position + size]
            position += size + 2

    def _fail(self) -> None:
        if self.transport is not None:
            self.transport.write(_response(400, b'{"error":{"message":"bad request"}}', close=True))
            self.transport.close()
        self.buffer.clear()

    def _next(self) -> None:
        if not self.requests or self.transport is None:
            self.busy = False
            return
        self.busy = True
        method, path, body, close = self.requests.popleft()
        if method == b"POST" and path in (b"/v1/chat/completions", b"/chat/completions"):
            chat = parse_chat(body)
            if chat is None:
                self._send(_response(400, b'{"error":{"message":"a JSON body with a model is required"}}'), close)
                return
            model, stream, include_usage = chat
            if stream:
                SERVED["stream"] += 1
                events = stream_events(model, include_usage=include_usage)
                self._later(self.config.latency_ms, self._stream, events, close)
            else:
                SERVED["chat"] += 1
                self._later(self.config.latency_ms, self._send, _response(200, completion_body(model)), close)
        elif method == b"GET" and path in (b"/v1/models", b"/models"):
            self._send(_response(200, models_body(self.config.models)), close)
        elif method == b"GET" and path == b"/stats":
            self._send(_response(200, json.dumps(SERVED).encode()), close)
        else:
            self._send(_response(404, b'{"error":{"message":"not found"}}'), close)

    def _later(self, delay_ms: float, callback, *args) -> None:  # type: ignore[no-untyped-def]
        if delay_ms > 0:
            self.loop.call_later(delay_ms / 1000, callback, *args)
        else:
            callback(*args)

    def _send(self, data: bytes, close: bool) -> None:
        if self.transport is None:
            return
        self.transport.write(data)
        if close:
            self.transport.close()
            return
        self._next()

    def _stream(self, events: list[bytes], close: bool) -> None:
        if self.transport is None:
            return
        self.transport.write(STREAM_HEAD + _chunked(events[0]))
        self._stream_rest(events, 1, close)

    def _stream_rest(self, events: list[bytes], index: int, close: bool) -> None:
        if self.transport is None:
            return
        interval = self.config.chunk_interval_ms
        if interval <= 0:
            self._send(b"".join(_chunked(event) for event in events[index:]) + b"0\r\n\r\n", close)
            return
        if index < len(STREAM_PIECES):  # content chunks apart; the finish, usage and [DONE] at once
            self.transport.write(_chunked(events[index]))
            self.loop.call_later(interval / 1000, self._stream_rest, events, index + 1, close)
            return
        self._send(b"".join(_chunked(event) for event in events[index:]) + b"0\r\n\r\n", close)


async def serve_asyncio(config: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: StubProtocol(config), config.host, config.port, backlog=2048)
    print(f"stub (asyncio) on http://{config.host}:{config.port}/v1, latency {config.latency_ms:g} ms", flush=True)
    async with server:
        await server.serve_forever()


# --- uvicorn: a minimal ASGI app with the same answers ----------------------------------------------


def asgi_app(config: argparse.Namespace):  # type: ignore[no-untyped-def]
    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path, method = scope["path"], scope["method"]
        json_headers = [(b"content-type", b"application/json")]
        if method == "POST" and path in ("/v1/chat/completions", "/chat/completions"):
            chat = parse_chat(body)
            if chat is None:
                await send({"type": "http.response.start", "status": 400, "headers": json_headers})
                await send({"type": "http.response.body", "body": b'{"error":{"message":"bad request"}}'})
                return
            model, stream, include_usage = chat
            if config.latency_ms > 0:
                await asyncio.sleep(config.latency_ms / 1000)
            if not stream:
                SERVED["chat"] += 1
                await send({"type": "http.response.start", "status": 200, "headers": json_headers})
                await send({"type": "http.response.body", "body": completion_body(model)})
                return
            SERVED["stream"] += 1
            events = stream_events(model, include_usage=include_usage)
            headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            for index, event in enumerate(events):
                if 0 < index < len(STREAM_PIECES) and config.chunk_interval_ms > 0:
                    await asyncio.sleep(config.chunk_interval_ms / 1000)
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        if method == "GET" and path in ("/v1/models", "/models", "/stats"):
            answer = models_body(config.models) if path != "/stats" else json.dumps(SERVED).encode()
            await send({"type": "http.response.start", "status": 200, "headers": json_headers})
            await send({"type": "http.response.body", "body": answer})
            return
        await send({"type": "http.response.start", "status": 404, "headers": json_headers})
        await send({"type": "http.response.body", "body": b'{"error":{"message":"not found"}}'})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="Before every answer (the first chunk).")
    parser.add_argument("--chunk-interval-ms", type=float, default=10.0, help="Between streamed content chunks.")
    parser.add_argument("--models", default="stub-model", help="Comma-separated ids GET /v1/models lists.")
    parser.add_argument("--impl", choices=["asyncio", "uvicorn"], default="asyncio")
    config = parser.parse_args()
    config.models = [m for m in config.models.split(",") if m]
    if config.impl == "uvicorn":
        import uvicorn

        print(f"stub (uvicorn) on http://{config.host}:{config.port}/v1, latency {config.latency_ms:g} ms", flush=True)
        uvicorn.run(
            asgi_app(config), host=config.host, port=config.port, log_level="warning", access_log=False, backlog=2048
        )
        return
    try:
        asyncio.run(serve_asyncio(config))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
