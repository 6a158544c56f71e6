"""`manage.py dataset list|create|import|export|add-run --project SLUG|--owner USER ...`

- `list`: the project's datasets, their latest version and example count.
- `create NAME [--description TEXT]`
- `import NAME FILE [--format jsonl|csv] [--note TEXT]`: one new version (the API's file formats);
  a bad row adds nothing and the first bad rows are printed by line.
- `export NAME [--version N] [--format jsonl|csv] [--output FILE]`: streamed, to stdout by default.
- `add-run NAME RUN_ID [--expected-output TEXT] [--tag TAG ...]`: saves a succeeded run as an example.
"""

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.management.project_options import add_project_arguments, project_from_options
from evals import dataset_files, dataset_selectors, dataset_services
from llmops.errors import DomainError

_SHOWN_ERRORS = 20


class Command(BaseCommand):
    help = "Datasets of examples: list, create, import, export, add a run."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        for name in ("list", "create", "import", "export", "add-run"):
            sub_parser = sub.add_parser(name)
            add_project_arguments(sub_parser, what="the datasets")
            if name != "list":
                sub_parser.add_argument("name")
        creating = sub.choices["create"]
        creating.add_argument("--description", default="")
        importing = sub.choices["import"]
        importing.add_argument("file")
        importing.add_argument("--format", choices=["jsonl", "csv"])
        importing.add_argument("--note", default="")
        exporting = sub.choices["export"]
        exporting.add_argument("--version", type=int)
        exporting.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
        exporting.add_argument("--output")
        adding = sub.choices["add-run"]
        adding.add_argument("run")
        adding.add_argument("--expected-output")
        adding.add_argument("--tag", action="append", default=[], dest="tags")

    def handle(self, *args: Any, **options: Any) -> None:
        project, user = project_from_options(options)
        try:
            getattr(self, "_" + options["action"].replace("-", "_"))(project, user, options)
        except DomainError as exc:
            shown = [
                f"  {field}: {'; '.join(problems)}" for field, problems in list(exc.fields.items())[:_SHOWN_ERRORS]
            ]
            raise CommandError("\n".join([exc.message, *shown])) from None

    def _list(self, project: Any, user: Any, options: dict[str, Any]) -> None:
        for dataset in dataset_selectors.dataset_list(project=project):
            self.stdout.write(
                f"{dataset.name}\tv{dataset.latest_version_number}\t{getattr(dataset, 'example_count', 0)} examples"
            )

    def _create(self, project: Any, user: Any, options: dict[str, Any]) -> None:
        dataset = dataset_services.dataset_create(
            project=project, created_by=user, name=options["name"], description=options["description"]
        )
        self.stdout.write(f"Created dataset {dataset.name}.")

    def _import(self, project: Any, user: Any, options: dict[str, Any]) -> None:
        dataset = dataset_selectors.dataset_get(project=project, ref=options["name"])
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"No file {path}.")
        file_format = options["format"] or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
        with path.open("rb") as f:
            lines = dataset_files.text_lines(f)
            rows = dataset_files.rows_from_csv(lines) if file_format == "csv" else dataset_files.rows_from_jsonl(lines)
            version = dataset_services.examples_append(
                project=project,
                dataset=dataset,
                examples=rows,
                created_by=user,
                note=options["note"] or path.name[:500],
            )
        self.stdout.write(f"{dataset.name} v{version.number}: {version.added_count} example(s) added.")

    def _export(self, project: Any, user: Any, options: dict[str, Any]) -> None:
        dataset = dataset_selectors.dataset_get(project=project, ref=options["name"])
        version = dataset_selectors.dataset_version_get(dataset=dataset, number=options["version"])
        chunks = (
            dataset_files.export_csv(version) if options["format"] == "csv" else dataset_files.export_jsonl(version)
        )
        if options["output"]:
            with open(options["output"], "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
        else:
            for chunk in chunks:
                sys.stdout.buffer.write(chunk)
            sys.stdout.flush()

    def _add_run(self, project: Any, user: Any, options: dict[str, Any]) -> None:
        dataset = dataset_selectors.dataset_get(project=project, ref=options["name"])
        version, example = dataset_services.example_from_run(
            project=project,
            dataset=dataset,
            run=options["run"],
            created_by=user,
            expected_output=options["expected_output"],
            tags=options["tags"],
        )
        self.stdout.write(f"{dataset.name} v{version.number}: example {example.position} from run {options['run']}.")
