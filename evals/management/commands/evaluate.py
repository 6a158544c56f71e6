"""`manage.py evaluate PROMPT --dataset NAME --versions 3,4 [--scorer exact_match ...] [--fail-under X]
(--project SLUG | --owner USER) [--timeout S]`

Runs an experiment (evals.experiment_services.experiment_create: the versions over the dataset's
latest version, or --dataset-version), waits for it with a progress bar on stderr, prints the result
table (per version: mean / median / pass rate per scorer, tokens, cost, p50 / p95 latency; then each
version compared with the first, the baseline, by the sign test) and exits with a code CI can gate on:

    0  completed; no version significantly worse than the baseline; every mean at least --fail-under
    1  a version after the baseline (or the only one) has a mean score below --fail-under
    2  a version is significantly worse than the baseline (p < 0.05) on a scorer
    3  not finished within --timeout (the experiment is canceled), or it failed or was canceled
    4  invalid input (an unknown prompt, dataset, version or scorer, an example that does not render):
       nothing was created

The most severe applies (3, then 2, then 1). Argument errors (argparse's usage errors) exit 2 too,
before anything runs. On the embedded default (no REDIS_URL) there is no separate worker, so the
command executes the batches itself in worker threads, as batch_run does; with REDIS_URL the
rundramatiq workers do.
"""

import contextlib
import json
import sys
import threading
import time
from typing import Any

import dramatiq
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import autodiscover_modules
from dramatiq.brokers.stub import StubBroker
from tqdm import tqdm

from accounts.management.project_options import add_project_arguments, project_from_options
from evals import experiment_services
from evals.models import Experiment
from llmops.errors import Conflict, DomainError
from runs import batch_services
from runs.models import BatchItem, Run

EXIT_FAIL_UNDER = 1
EXIT_WORSE = 2
EXIT_UNFINISHED = 3
EXIT_INVALID = 4


def _versions(text: str) -> list[int | str]:
    refs: list[int | str] = [part.strip() for part in text.split(",") if part.strip()]
    if not refs:
        raise CommandError(
            "--versions: give version numbers or labels, comma-separated (e.g. 3,4).", returncode=EXIT_INVALID
        )
    return [int(ref) if isinstance(ref, str) and ref.isdigit() else ref for ref in refs]


def _scorer(text: str) -> Any:
    """A scorer's name, or its spec as JSON ({"name": ..., "options": ..., "threshold": ...})."""
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise CommandError(f"--scorer {text!r}: invalid JSON ({exc}).", returncode=EXIT_INVALID) from None
    return text


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


class Command(BaseCommand):
    help = "Runs prompt versions over a dataset, scores them, prints the comparison; exits non-zero to fail CI."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("prompt", metavar="PROMPT", help="The prompt's name or id.")
        parser.add_argument("--dataset", required=True, help="The dataset's name or id.")
        parser.add_argument("--dataset-version", type=int, help="A version number of the dataset; default its latest.")
        parser.add_argument(
            "--versions", required=True, help="Comma-separated version numbers or labels; the first is the baseline."
        )
        parser.add_argument(
            "--scorer",
            action="append",
            dest="scorers",
            metavar="NAME|JSON",
            help='A scorer name, or a JSON spec {"name", "options", "threshold"}; repeat for more. '
            "Default: exact_match.",
        )
        parser.add_argument(
            "--fail-under", type=float, help="Exit 1 when a version after the baseline has a mean score below this."
        )
        add_project_arguments(parser, what="the prompt, the dataset and the experiment")
        parser.add_argument("--timeout", type=float, default=3600.0, help="Seconds to wait; then cancel and exit 3.")
        parser.add_argument(
            "--concurrency", type=int, default=batch_services.DEFAULT_CONCURRENCY, help="Runs in flight per version."
        )
        parser.add_argument("--name", default="", help="A name for the experiment.")
        parser.add_argument("--poll", type=float, default=0.5, help="Seconds between looks at the progress.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args: Any, **options: Any) -> None:
        project, creator = project_from_options(options)
        try:
            experiment = experiment_services.experiment_create(
                project=project,
                created_by=creator,
                api_key=None,
                prompt=options["prompt"],
                dataset=options["dataset"],
                dataset_version=options["dataset_version"],
                versions=_versions(options["versions"]),
                scorers=[_scorer(text) for text in options["scorers"] or ["exact_match"]],
                concurrency=options["concurrency"],
                name=options["name"],
            )
        except DomainError as exc:
            details = "".join(f"\n  {field}: {' '.join(messages)}" for field, messages in exc.fields.items())
            raise CommandError(f"{exc.message}{details}", returncode=EXIT_INVALID) from None
        self.stdout.write(f"Experiment {experiment.pk}: {experiment.arms.count()} version(s).")
        finished = self._follow(experiment, options)
        experiment.refresh_from_db()
        if not finished:
            with contextlib.suppress(Conflict):  # it finished meanwhile
                experiment_services.experiment_cancel(experiment=experiment)
            raise CommandError(
                f"Experiment {experiment.pk} did not finish within {options['timeout']:g} s; it was canceled.",
                returncode=EXIT_UNFINISHED,
            )
        if experiment.status != Experiment.Status.COMPLETED:
            reason = f": {experiment.error_message}" if experiment.error_message else "."
            raise CommandError(f"Experiment {experiment.pk} {experiment.status}{reason}", returncode=EXIT_UNFINISHED)
        self._print_table(experiment)
        self._verdict(experiment.summary, options["fail_under"])

    # --- waiting --------------------------------------------------------------------------------

    def _follow(self, experiment: Experiment, options: dict[str, Any]) -> bool:
        """Waits for the experiment to finish, or the timeout; True when it finished."""
        local = isinstance(dramatiq.get_broker(), StubBroker)
        worker = self._start_worker(experiment.concurrency * experiment.arms.count() + 1) if local else None
        batches = list(experiment.arms.values_list("batch_id", flat=True))
        total = BatchItem.objects.filter(batch_id__in=batches).count()
        deadline = time.monotonic() + options["timeout"]
        stop = threading.Event()
        bar = tqdm(
            total=total,
            unit="run",
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=0.5,
            disable=options["no_progress"],
        )
        try:
            while True:
                status = Experiment.objects.values_list("status", flat=True).get(pk=experiment.pk)
                done = (
                    BatchItem.objects.filter(batch_id__in=batches).filter(run__status__in=Run.FINISHED).count()
                    + BatchItem.objects.filter(batch_id__in=batches, run__isnull=True).exclude(error_code="").count()
                )
                bar.update(done - bar.n)
                if status == Experiment.Status.SCORING or (done == total and status == Experiment.Status.RUNNING):
                    bar.set_postfix_str("scoring", refresh=False)
                if status not in Experiment.ACTIVE:
                    return True
                if time.monotonic() >= deadline:
                    return False
                stop.wait(min(options["poll"], max(0.0, deadline - time.monotonic())))
        finally:
            bar.close()
            if worker is not None:
                worker.stop(timeout=10_000)

    def _start_worker(self, threads: int) -> dramatiq.Worker:
        broker = dramatiq.get_broker()
        autodiscover_modules(*settings.DRAMATIQ_AUTODISCOVER_MODULES)
        broker.emit_after("process_boot")
        worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
        worker.start()
        return worker

    # --- reporting ------------------------------------------------------------------------------

    def _print_table(self, experiment: Experiment) -> None:
        summary = experiment.summary
        names = [spec["name"] for spec in experiment.scorers]
        self.stdout.write(
            f"\nExperiment {experiment.pk}: {experiment.dataset.name} v{summary['dataset_version']}, "
            f"{summary['example_count']} example(s), {experiment.status}.\n"
        )
        header = ["version", "ok/runs"]
        for name in names:
            header += [f"{name} mean", "median", "pass"]
        header += ["tokens", "cost", "p50 ms", "p95 ms"]
        rows = [header]
        for arm in summary["arms"]:
            label = f"v{arm['version']}" + ("" if str(arm["version"]) == arm["ref"] else f" ({arm['ref']})")
            row = [label + (" *" if arm["position"] == 0 else ""), f"{arm['succeeded']}/{arm['runs']}"]
            for name in names:
                score = arm["scores"][name]
                rate = score["pass_rate"]
                row += [_fmt(score["mean"]), _fmt(score["median"]), "-" if rate is None else f"{rate:.0%}"]
            latency = arm["latency_ms"]
            row += [
                str(arm["tokens"]["total"]),
                f"${arm['cost']}",
                "-" if latency["p50"] is None else str(latency["p50"]),
                "-" if latency["p95"] is None else str(latency["p95"]),
            ]
            rows.append(row)
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        for row in rows:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        self.stdout.write("(* the baseline)")
        if summary["comparisons"]:
            self.stdout.write("\nCompared with the baseline (exact sign test, ties dropped, alpha 0.05):")
        versions = {arm["position"]: arm["version"] for arm in summary["arms"]}
        for comparison in summary["comparisons"]:
            delta = comparison["mean_delta"]
            self.stdout.write(
                f"  v{versions[comparison['candidate']]} vs v{versions[comparison['baseline']]} on "
                f"{comparison['scorer']}: {comparison['better']} better, {comparison['worse']} worse, "
                f"{comparison['same']} same; mean delta {'-' if delta is None else f'{delta:+.3f}'}; "
                f"p = {comparison['p_value']:.4g}: {comparison['verdict']}"
            )

    def _verdict(self, summary: dict[str, Any], fail_under: float | None) -> None:
        """Raises CommandError with the exit code of the most severe finding, else returns (exit 0)."""
        versions = {arm["position"]: arm["version"] for arm in summary["arms"]}
        worse = [
            f"v{versions[c['candidate']]} is significantly worse than v{versions[c['baseline']]} on {c['scorer']} "
            f"(p = {c['p_value']:.4g})"
            for c in summary["comparisons"]
            if c["verdict"] == "worse"
        ]
        below = []
        if fail_under is not None:
            candidates = summary["arms"][1:] or summary["arms"]
            for arm in candidates:
                for name, score in arm["scores"].items():
                    if score["mean"] is None or score["mean"] < fail_under:
                        below.append(f"v{arm['version']}'s mean {name} is {_fmt(score['mean'])}, under {fail_under:g}")
        if worse:
            raise CommandError("; ".join(worse + below) + ".", returncode=EXIT_WORSE)
        if below:
            raise CommandError("; ".join(below) + ".", returncode=EXIT_FAIL_UNDER)
        self.stdout.write(self.style.SUCCESS("\nPassed."))
