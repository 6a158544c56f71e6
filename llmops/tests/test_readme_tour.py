"""The README's `curl` commands, run as written against a real server.

What `make run` does, on a throwaway SQLite database: migrate, `prices_sync`, `manage.py demo` (for the key),
then `runserver` with DEBUG on, on a free port. The one difference is the model: the provider `local` points at
the OpenAI-compatible test server instead of SmolLM2, so runs answer in milliseconds and with a known text.

Every `curl` command of the README's sections "First ten minutes", "Quick API tour" and the runs example of
"Runs and providers" is run in order by `bash -c` exactly as printed, with the README's variables API and KEY
set, and must exit 0 with the status code the operation answers when it succeeds and a JSON body. A `# {...}`
line after a command is the answer the README promises, compared as JSON. Only HTTP is involved, so the test
holds whatever the code's layout.
"""

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from providers.tests.openai_server import OpenAIServer, answer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
TOUR_SECTIONS = ("First ten minutes", "Quick API tour", "Runs and providers")
# The values the README gives its variables; the test swaps in its own server and key.
README_API = "http://127.0.0.1:8000/api/v1"
README_KEY = "llmk_..."
ANSWER = "Hello, Ada! Nice to meet you."
# What a successful call answers; everything else the tour calls answers 200.
CREATED = [("POST", re.compile(r"/api/v1/prompts")), ("POST", re.compile(r"/api/v1/prompts/[^/]+/versions"))]
# Fills curl's output with the status, method and URL after the body, on a line of their own.
WRITE_OUT = "\\n%{http_code} %{method} %{url_effective}"


@dataclass
class Command:
    section: str
    text: str
    expected: str | None = None  # the `# {...}` line that follows it, if any


def tour_commands(readme: str) -> list[Command]:
    """The commands of the shell blocks with `curl` in them, in the README's order, in TOUR_SECTIONS."""
    commands: list[Command] = []
    for section, block in _shell_blocks(readme):
        if section not in TOUR_SECTIONS or not any(line.startswith("curl ") for line in block):
            continue
        pending = ""
        for line in block:
            if not pending and line.startswith("# {") and commands:
                commands[-1].expected = line.removeprefix("# ")
                continue
            if not pending and (not line.strip() or line.startswith("#")):
                continue
            pending = f"{pending}\n{line}" if pending else line
            if _complete(pending):
                commands.append(Command(section, pending))
                pending = ""
        assert not pending, f"unfinished command in {section!r}: {pending}"
    return commands


def _shell_blocks(readme: str) -> Iterator[tuple[str, list[str]]]:
    """(section, lines) of every ```sh block, dedented (blocks in list items are indented)."""
    section, block, indent = "", None, 0
    for line in readme.splitlines():
        stripped = line.lstrip()
        if block is None:
            if line.startswith("## "):
                section = line.removeprefix("## ").strip()
            elif stripped == "```sh":
                block, indent = [], len(line) - len(stripped)
        elif stripped == "```":
            yield section, block
            block = None
        else:
            block.append(line[indent:])


def _complete(command: str) -> bool:
    """Whether bash would run `command` as it is: no open quote, no trailing backslash."""
    if command.rstrip().endswith("\\"):
        return False
    try:
        shlex.split(command, comments=True)
    except ValueError:  # No closing quotation
        return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@dataclass
class Platform:
    api: str
    key: str
    model: OpenAIServer


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """`make run` on a throwaway database, its provider `local` being the test server."""
    tmp = tmp_path_factory.mktemp("readme-tour")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "EMBEDDED_WORKER") and not key.startswith("RATE_LIMIT_")
    }
    env.update(DEBUG="1", DATABASE_URL=f"sqlite:///{tmp / 'db.sqlite3'}", LOG_LEVEL="WARNING", LOG_FORMAT="text")
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"

    model = OpenAIServer().start()
    model.set_models(["smollm2"])  # what the demo prompt's `local/smollm2` asks for
    model.set_default(answer(ANSWER))
    _manage(env, "migrate", "--noinput")
    _manage(env, "prices_sync")
    printed = _manage(env, "demo", "--base-url", base_url)
    key = re.search(r"^\s*API key:\s+(llmk_\S+)\s*$", printed, re.MULTILINE)
    assert key is not None, printed
    _manage(env, "provider", "set", "local", "--kind", "openai-compatible", "--base-url", model.url)

    log = (tmp / "runserver.log").open("w")
    server = subprocess.Popen(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base_url}/api/v1/health", timeout=5):  # noqa: S310 - our server
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"runserver did not start:\n{(tmp / 'runserver.log').read_text()}")
            time.sleep(0.3)
        yield Platform(api=f"{base_url}/api/v1", key=key[1], model=model)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        model.stop()


def _run(platform: Platform, command: Command) -> tuple[int, str, str, Any]:
    """Runs the command as written; returns (status, method, path, JSON body)."""
    # A function in front of curl adds --write-out and leaves the command's own options as they are.
    script = f"curl() {{ command curl --write-out '{WRITE_OUT}' \"$@\"; }}\n{command.text}\n"
    env = {**os.environ, "API": platform.api, "KEY": platform.key}
    result = subprocess.run(  # noqa: S603 - a fixed argv; the script is the README's own text
        ["/bin/bash", "-c", script], env=env, capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 0, f"exit {result.returncode}: {command.text}\n{result.stderr}"
    body, _, trailer = result.stdout.rpartition("\n")
    status, method, url = trailer.split(" ", 2)
    path = url.removeprefix(platform.api.removesuffix("/api/v1")).split("?")[0]
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError:
        pytest.fail(f"not JSON ({status}): {command.text}\n{body[:500]}")
    return int(status), method, path, parsed


def _expected_status(method: str, path: str) -> int:
    return 201 if any(method == m and pattern.fullmatch(path) for m, pattern in CREATED) else 200


def _matches_promise(actual: Any, promised: Any) -> bool:
    """JSON equality where the README writes "<uuid>" for a value that differs every time."""
    if promised == "<uuid>":
        return isinstance(actual, str) and re.fullmatch(r"[0-9a-f-]{36}", actual) is not None
    if isinstance(promised, dict):
        return (
            isinstance(actual, dict)
            and actual.keys() == promised.keys()
            and all(_matches_promise(actual[k], v) for k, v in promised.items())
        )
    return actual == promised


def test_the_readme_assigns_the_variables_the_test_sets():
    """The tour's variables are set as the test sets them: the API on make run's address, the key printed."""
    blocks = [block for section, block in _shell_blocks(README.read_text()) if section in TOUR_SECTIONS]
    assignments = {
        line.split("=", 1)[0]: line.split("=", 1)[1].split()[0]
        for block in blocks
        for line in block
        if re.match(r"^[A-Z]+=", line)
    }

    assert assignments == {"API": README_API, "KEY": README_KEY}


def test_the_tour_is_found():
    commands = tour_commands(README.read_text())

    assert {c.section for c in commands} == set(TOUR_SECTIONS)
    assert all(c.text.startswith(("curl ", "KEY=", "API=")) for c in commands), [c.text for c in commands]
    assert sum(c.expected is not None for c in commands) >= 1


def test_every_command_of_the_tour_works_as_written(platform: Platform):
    done: list[tuple[str, str]] = []
    for command in tour_commands(README.read_text()):
        if command.text.startswith(("KEY=", "API=")):
            continue  # set by the test, to its server and the key `manage.py demo` printed
        status, method, path, body = _run(platform, command)

        assert status == _expected_status(method, path), (command.text, body)
        if command.expected is not None:
            assert _matches_promise(body, json.loads(command.expected)), (command.text, body)
        if (method, path) == ("POST", "/api/v1/runs"):
            # ?wait=30: answered once finished, with the model's answer and its (known, zero) local cost.
            assert (body["status"], body["output"]) == ("succeeded", ANSWER), body
            assert body["cost"]["known"] is True and float(body["cost"]["amount"]) == 0, body
        if (method, path) == ("GET", "/api/v1/runs"):
            newest = body["results"][0]
            assert (newest["status"], newest["output"], newest["cost"]["known"]) == ("succeeded", ANSWER, True), body
        if (method, path) == ("GET", "/api/v1/costs/summary"):
            assert body["total"]["runs"] >= 1, body
        done.append((method, path))

    # The First ten minutes: the demo prompt, a run of it, then the run and the cost summary.
    assert ("GET", "/api/v1/prompts") in done
    assert done.count(("POST", "/api/v1/runs")) == 2  # First ten minutes, and the runs example
    assert ("GET", "/api/v1/runs") in done
    assert ("GET", "/api/v1/costs/summary") in done
    # The Quick API tour: create, version, deploy, look at the labels, render.
    assert ("POST", "/api/v1/prompts/summarize/render") in done
    # Both runs reached the model, with the demo prompt's messages.
    chats = platform.model.chat_requests()
    assert len(chats) == 2
    assert all(r.body["messages"][-1]["content"] == "Say hello to Ada in one short sentence." for r in chats)
