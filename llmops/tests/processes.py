"""Another Django process on the test database, for tests of what one process must see of another's
writes (imported, not collected): it runs a script that reads stdin and answers one line per line."""

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


class Child:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def ask(self, line: str = "go") -> str:
        """Sends `line` and returns the child's answer to it."""
        self.send(line)
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()


@contextmanager
def django_child(script: str, **env: str) -> Iterator[Child]:
    """`script` in a new interpreter with the settings and the database of this test (and `env`)."""
    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    process = subprocess.Popen(  # noqa: S603 (our own script, in our own interpreter)
        [sys.executable, "-c", "import django\ndjango.setup()\n" + script],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "llmops.settings", **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield Child(process)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=20)
