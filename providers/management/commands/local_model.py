"""`manage.py local_model serve|path`: the offline SmolLM2 model behind the `local` provider.

`serve` starts llama-cpp-python's OpenAI-compatible server as a child (its output is this
command's), points the `local` provider at it and sends it one tiny completion; only when that
answers does it say so (and write --ready-file), then it waits for the server. A server that fails
any step is stopped and the command exits non-zero with the reason. SIGTERM, SIGHUP and Ctrl-C stop
the server too.
"""

import contextlib
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from providers import local_model


class Command(BaseCommand):
    help = "Serves the offline SmolLM2 model for the `local` provider, or prints where its GGUF file is."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        serve = sub.add_parser("serve", help="Run the model server in the foreground, after a self-test.")
        serve.add_argument("--port", type=int, default=local_model.DEFAULT_PORT)
        serve.add_argument(
            "--ready-timeout",
            type=float,
            default=local_model.READY_TIMEOUT,
            help="Seconds the server may take to load the model (default: %(default)g).",
        )
        serve.add_argument(
            "--ready-file",
            type=Path,
            help="Created once the self-test passed, removed when the server stops (`make run` waits for it).",
        )
        sub.add_parser("path", help="Print the path of the GGUF file.")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "path":
            try:
                self.stdout.write(str(local_model.gguf_path()))
            except FileNotFoundError as exc:
                raise CommandError(str(exc)) from None
            return
        port: int = options["port"]
        if not 0 < port < 65536:
            raise CommandError("--port must be between 1 and 65535.")
        if not options["ready_timeout"] > 0:
            raise CommandError("--ready-timeout must be a positive number of seconds.")
        self._serve(port, ready_timeout=options["ready_timeout"], ready_file=options["ready_file"])

    def _serve(self, port: int, *, ready_timeout: float, ready_file: Path | None) -> None:
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)  # a stale one from a killed run would lie
        with local_model.stop_on_signals():
            try:
                process, provider, completion = local_model.start_checked(port, ready_timeout=ready_timeout)
            except local_model.LocalModelError as exc:
                raise CommandError(f"The local model cannot serve: {exc}") from None
            except (local_model.StopRequested, KeyboardInterrupt):
                return  # stopped while starting; start_checked stopped the server
            try:
                self.stdout.write(
                    f"Self-test passed: '{local_model.LOCAL_MODEL_ID}' answered in {completion.latency_ms} ms.\n"
                    f"Provider '{provider.name}' -> {provider.base_url}; serving until stopped."
                )
                self.stdout.flush()
                connections.close_all()  # nothing more to read or write while serving
                if ready_file is not None:
                    ready_file.write_text(f"{provider.base_url}\n")
                returncode = process.wait()
            except (local_model.StopRequested, KeyboardInterrupt):
                return  # asked to stop: the finally below does it
            finally:
                local_model.stop_server(process)
                if ready_file is not None:
                    with contextlib.suppress(OSError):
                        ready_file.unlink(missing_ok=True)
        raise CommandError(
            f"The model server stopped by itself, with {local_model.exit_description(returncode)}.",
            returncode=returncode if 0 < returncode < 256 else 1,
        )
