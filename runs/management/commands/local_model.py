"""`manage.py local_model serve|path`: the offline SmolLM2 model behind the `local` provider.

`serve` points the `local` provider at the port, then replaces this process with llama-cpp-python's
OpenAI-compatible server (so signals and exit codes are the server's own).
"""

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from runs import local_model


class Command(BaseCommand):
    help = "Serves the offline SmolLM2 model for the `local` provider, or prints where its GGUF file is."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        serve = sub.add_parser("serve", help="Run the model server in the foreground.")
        serve.add_argument("--port", type=int, default=local_model.DEFAULT_PORT)
        sub.add_parser("path", help="Print the path of the GGUF file.")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            path = local_model.gguf_path()
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from None
        if action == "path":
            self.stdout.write(str(path))
            return

        port: int = options["port"]
        if not 0 < port < 65536:
            raise CommandError("--port must be between 1 and 65535.")
        try:
            import llama_cpp.server  # noqa: F401 - only checking it is installed
        except ImportError:
            raise CommandError("llama-cpp-python[server] is not installed: see requirements-llm.txt.") from None
        provider = local_model.ensure_local_provider(port)
        command = local_model.server_command(port)
        self.stdout.write(
            f"Provider '{provider.name}' -> {provider.base_url}; model id '{local_model.LOCAL_MODEL_ID}'.\n"
            f"Starting: {' '.join(command)}"
        )
        self.stdout.flush()
        connections.close_all()  # exec keeps no Python cleanup, so release the database now
        os.execv(command[0], command)  # noqa: S606 - a fixed argv built from our own paths
