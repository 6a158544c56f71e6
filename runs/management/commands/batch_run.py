"""`manage.py batch_run PROMPT[@label|@version] --project SLUG|--owner USER --input FILE --output OUT.jsonl [--wait]`

Runs every row of a JSON Lines or CSV file (the formats of POST /api/v1/batches) as one batch, and
with --wait writes each finished item to RESULTS.jsonl as it completes (one whole line per item,
flushed), with a progress bar (rate, ETA, running cost) and a summary at the end.

Resumable: items whose key is already in RESULTS.jsonl are not submitted again, so rerunning the
same command after an interruption runs only the rest. Only succeeded and failed items are written;
canceled ones are left for the rerun.

Interrupted (Ctrl-C or SIGTERM), the command cancels its batch: pending items and queued runs never
run; runs already running get --grace seconds to finish and are written; then it exits with 130.
A second Ctrl-C stops at once (the output stays whole lines; a torn last line is dropped on rerun).

On the embedded default (no REDIS_URL) there is no separate worker, so the command executes the
batch itself in worker threads and always waits; with REDIS_URL the rundramatiq workers do.
"""

import contextlib
import json
import math
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import IO, Any

import dramatiq
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import autodiscover_modules
from dramatiq.brokers.stub import StubBroker
from tqdm import tqdm

from accounts.management.project_options import add_project_arguments, project_from_options
from llmops.errors import Conflict, DomainError
from runs import batch_files, batch_selectors, batch_services
from runs.models import Batch, Run

# Finished items are looked for since the latest finish already seen, less this margin: a run may
# commit a moment after the time it records, and worker clocks may differ a little.
_WATERMARK_MARGIN = timedelta(seconds=30)
_SHOWN_ERRORS = 20


class Interrupted(Exception):
    """Ctrl-C or SIGTERM while the rows were still being read: nothing was created."""


def _parse_prompt(spec: str) -> tuple[str, int | None, str | None]:
    name, _, ref = spec.partition("@")
    if not name:
        raise CommandError("PROMPT must be a prompt name or id, optionally with @label or @version.")
    if not ref:
        return name, None, None
    if ref.isdigit():
        return name, int(ref), None
    return name, None, ref


def _drop_torn_line(path: Path) -> None:
    """A kill during a write can leave a last line without its newline: it is dropped (its item
    is not done, so the rerun runs it again)."""
    with path.open("r+b") as f:
        size = f.seek(0, 2)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        position = size
        while position > 0:
            step = min(64 * 1024, position)
            position -= step
            f.seek(position)
            block = f.read(step)
            newline = block.rfind(b"\n")
            if newline >= 0:
                f.truncate(position + newline + 1)
                return
        f.truncate(0)


def done_keys(path: Path) -> set[str]:
    """The keys of the items already in the output file (one JSON object per line)."""
    if not path.exists():
        return set()
    _drop_torn_line(path)
    keys: set[str] = set()
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                keys.add(str(json.loads(line)["key"]))
            except (ValueError, KeyError, TypeError):
                raise CommandError(f"{path}, line {number}: not a result line of this command.") from None
    return keys


def _percentile(values: list[int], fraction: float) -> int | None:
    """Nearest-rank percentile of sorted values."""
    if not values:
        return None
    return values[max(0, math.ceil(fraction * len(values)) - 1)]


def _run_cost(run: dict[str, Any]) -> Decimal:
    """A run's charged amount from its public shape; 0 when not charged or the price is unknown."""
    amount = (run.get("cost") or {}).get("amount")
    return Decimal(amount) if amount else Decimal(0)


def output_summary(path: Path) -> dict[str, Any]:
    """Counts by status, tokens, cost and latency percentiles of every item in the output file."""
    counts: Counter[str] = Counter()
    tokens = 0
    cost = Decimal(0)
    latencies: list[int] = []
    if path.exists():
        with path.open("rb") as f:
            for line in f:
                result = json.loads(line)
                counts[result["status"]] += 1
                run = result.get("run") or {}
                tokens += (run.get("usage") or {}).get("total_tokens") or 0
                cost += _run_cost(run)
                if run.get("latency_ms") is not None:
                    latencies.append(int(run["latency_ms"]))
    latencies.sort()
    return {
        "counts": dict(counts),
        "total": sum(counts.values()),
        "total_tokens": tokens,
        "cost": cost,
        "p50_ms": _percentile(latencies, 0.50),
        "p95_ms": _percentile(latencies, 0.95),
        "mean_ms": round(statistics.fmean(latencies)) if latencies else None,
    }


class Command(BaseCommand):
    help = "Runs every row of a JSONL or CSV file as a batch and writes the results to a JSONL file (resumable)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("prompt", metavar="PROMPT[@label|@version]", help="e.g. summarize@production, greet@3.")
        add_project_arguments(parser, what="the prompt and the batch")
        parser.add_argument("--input", required=True, type=Path, help="JSON Lines (.jsonl) or CSV (.csv) rows.")
        parser.add_argument("--output", required=True, type=Path, help="Results, one JSON object per line.")
        parser.add_argument("--format", choices=["jsonl", "csv"], help="Input format; default: by file extension.")
        parser.add_argument(
            "--concurrency", type=int, default=batch_services.DEFAULT_CONCURRENCY, help="Most runs in flight at once."
        )
        parser.add_argument("--wait", action="store_true", help="Wait for the results and write them to --output.")
        parser.add_argument("--skip-invalid", action="store_true", help="Leave invalid rows out instead of failing.")
        parser.add_argument("--name", default="", help="A name for the batch.")
        parser.add_argument(
            "--grace", type=float, default=30.0, help="Seconds running items get to finish after Ctrl-C."
        )
        parser.add_argument("--poll", type=float, default=0.5, help="Seconds between looks for finished items.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args: Any, **options: Any) -> None:
        prompt, version, label = _parse_prompt(options["prompt"])
        project, creator = project_from_options(options)
        source, output = Path(options["input"]), Path(options["output"])  # call_command passes strings
        if not source.is_file():
            raise CommandError(f"No input file {source}.")
        if not output.parent.is_dir():
            raise CommandError(f"No directory {output.parent} for the output.")
        file_format = options["format"] or ("csv" if source.suffix.lower() == ".csv" else "jsonl")
        local_worker = isinstance(dramatiq.get_broker(), StubBroker)
        wait = options["wait"] or local_worker
        if local_worker and not options["wait"]:
            self.stderr.write("No separate workers on the embedded default: this command runs the batch and waits.")

        self.stopping = threading.Event()
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            done = done_keys(output)
            self.already_done = 0
            self.submitted = 0
            with source.open("rb") as f:
                rows = self._remaining(self._rows(f, file_format), done)
                try:
                    batch, skipped = batch_services.batch_create(
                        project=project,
                        created_by=creator,
                        api_key=None,
                        prompt=prompt,
                        version=version,
                        label=label,
                        items=rows,
                        concurrency=options["concurrency"],
                        skip_invalid=options["skip_invalid"],
                        name=options["name"] or source.name,
                        metadata={"source": source.name},
                    )
                except Interrupted:
                    self.stderr.write("Interrupted while reading the input: nothing was submitted.")
                    sys.exit(130)
                except DomainError as exc:
                    if self.submitted == 0 and self.already_done:
                        self.stdout.write(f"Nothing to do: all {self.already_done} items are already in {output}.")
                        self._print_summary(output)
                        return
                    raise CommandError(self._describe(exc)) from None
            self.stdout.write(
                f"Batch {batch.pk}: {batch.item_count} item(s) submitted, {self.already_done} already in {output}"
                + (f", {batch.skipped_count} invalid row(s) skipped" if batch.skipped_count else "")
                + "."
            )
            for row in skipped[:_SHOWN_ERRORS]:
                self.stderr.write(f"  skipped line {row.line}: {self._fields(row.fields)}")
            if not wait:
                self.stdout.write(
                    f"Follow it with GET /api/v1/batches/{batch.pk}; "
                    f"export the results with GET /api/v1/batches/{batch.pk}/results."
                )
                return
            interrupted = self._follow(batch, output, options, local_worker)
            self._print_summary(output)
            if interrupted:
                remaining = batch.item_count - len(self.written)
                self.stderr.write(
                    f"Interrupted: batch {batch.pk} was canceled; {remaining} item(s) are not in {output}. "
                    "Run the same command again to finish them."
                )
                sys.exit(130)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # --- input ---------------------------------------------------------------------------------

    def _rows(self, f: IO[bytes], file_format: str) -> Iterator[batch_files.BatchRow]:
        lines = batch_files.text_lines(f)
        return batch_files.rows_from_csv(lines) if file_format == "csv" else batch_files.rows_from_jsonl(lines)

    def _remaining(self, rows: Iterable[batch_files.BatchRow], done: set[str]) -> Iterator[batch_files.BatchRow]:
        for row in rows:
            if self.stopping.is_set():
                raise Interrupted  # inside batch_create's transaction: it rolls back
            if batch_files.row_key(row) in done:
                self.already_done += 1
                continue
            self.submitted += 1
            yield row

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping.is_set():
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.stopping.set()

    # --- waiting and writing -------------------------------------------------------------------

    def _follow(self, batch: Batch, output: Path, options: dict[str, Any], local_worker: bool) -> bool:
        """Writes finished items as they come until the batch is done; True when interrupted."""
        worker = self._start_worker(batch.concurrency + 1) if local_worker else None
        self.cost = Decimal(0)
        self.watermark: datetime | None = None
        bar = tqdm(
            total=batch.item_count,
            unit="item",
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=0.5,
            disable=options["no_progress"],
        )
        interrupted = False
        self.written: set[str] = set()
        try:
            with output.open("a", encoding="utf-8") as out:
                while True:
                    self._write_finished(batch, out, bar)
                    if self._is_done(batch):
                        break
                    if self.stopping.wait(options["poll"]):
                        interrupted = True
                        bar.write("Stopping: canceling the batch; running items may finish...", file=sys.stderr)
                        with contextlib.suppress(Conflict):  # it completed meanwhile
                            batch_services.batch_cancel(batch=batch)
                        self._let_running_finish(batch, worker, options["grace"])
                        worker = None
                        break
                self.watermark = None  # a last full pass: nothing finished is left out
                self._write_finished(batch, out, bar)
        finally:
            bar.close()
            if worker is not None:
                worker.stop(timeout=int(options["grace"] * 1000))
        return interrupted

    def _is_done(self, batch: Batch) -> bool:
        status = Batch.objects.values_list("status", flat=True).get(pk=batch.pk)
        if status == Batch.Status.COMPLETED:
            return True
        # Canceled through the API: done once its running runs have finished.
        running = Run.objects.filter(batch_item__batch=batch, status=Run.Status.RUNNING)
        return status == Batch.Status.CANCELED and not running.exists()

    def _write_finished(self, batch: Batch, out: IO[str], bar: Any) -> None:
        since = self.watermark - _WATERMARK_MARGIN if self.watermark is not None else None
        items = batch_selectors.batch_items(batch=batch, statuses=batch_selectors.WRITTEN_STATUSES, changed_since=since)
        for item in items.iterator(chunk_size=batch_selectors.CHUNK_SIZE):
            changed = batch_selectors.item_changed_at(item)
            if self.watermark is None or changed > self.watermark:
                self.watermark = changed
            if item.key in self.written:
                continue
            result = batch_selectors.item_result(item)
            out.write(json.dumps(result, ensure_ascii=False) + "\n")  # one whole line, then flushed
            out.flush()
            self.written.add(item.key)
            self.cost += _run_cost(result["run"] or {})
            bar.set_postfix_str(f"cost ${self.cost:.6f}", refresh=False)
            bar.update(1)

    def _start_worker(self, threads: int) -> dramatiq.Worker:
        broker = dramatiq.get_broker()
        autodiscover_modules(*settings.DRAMATIQ_AUTODISCOVER_MODULES)
        broker.emit_after("process_boot")
        worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
        worker.start()
        return worker

    def _let_running_finish(self, batch: Batch, worker: dramatiq.Worker | None, grace: float) -> None:
        if worker is not None:
            worker.stop(timeout=int(grace * 1000))  # waits for the messages being processed
            return
        deadline = time.monotonic() + grace
        running = Run.objects.filter(batch_item__batch=batch, status=Run.Status.RUNNING)
        while time.monotonic() < deadline and running.exists():
            time.sleep(0.2)

    # --- reporting -----------------------------------------------------------------------------

    def _print_summary(self, output: Path) -> None:
        summary = output_summary(output)
        counts = ", ".join(f"{status} {n}" for status, n in sorted(summary["counts"].items())) or "none"
        latency = f"p50 {summary['p50_ms']} ms, p95 {summary['p95_ms']} ms" if summary["p50_ms"] is not None else "n/a"
        self.stdout.write(
            f"Summary of {output} ({summary['total']} item(s)): {counts}; tokens {summary['total_tokens']}; "
            f"cost ${summary['cost']:.6f}; latency {latency}."
        )

    @staticmethod
    def _fields(fields: dict[str, list[str]]) -> str:
        return "; ".join(f"{name}: {' '.join(messages)}" for name, messages in fields.items())

    def _describe(self, exc: DomainError) -> str:
        lines = [exc.message]
        for number, (name, messages) in enumerate(exc.fields.items()):
            if number == _SHOWN_ERRORS:
                lines.append(f"  ... and {len(exc.fields) - _SHOWN_ERRORS} more.")
                break
            lines.append(f"  {name}: {' '.join(messages)}")
        return "\n".join(lines)
