"""Dataset file formats: the rows examples are appended from (inline JSON, JSON Lines, CSV) and a
dataset version written out (JSON Lines, CSV), both streamed line by line (as runs.batch_files).

A row's fields: `variables` (an object), `expected_output` and `reference` (strings), `tags` (a
list of strings). Their types are checked by evals.dataset_services.example_row_check; here a row
is only read. The export's own fields (`id`, `position`) may be present and are ignored, so an
exported file imports as it is (into new examples, with new ids).

CSV: a header row, then one example per row. Columns: `expected_output`, `reference`, `tags`,
`variables` (a JSON object) and `var.<name>` (one variable, its cell taken as text); both kinds of
variable columns may be used together, not for the same name. `tags` is a JSON array
(`["a", "b"]`, as exported) or, when the cell does not start with `[`, comma-separated
(`a, b`). An empty cell means "not given". The export writes `variables` and `tags` as JSON.
"""

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from evals.dataset_selectors import CHUNK_SIZE, examples_iter
from evals.models import DatasetVersion, Example
from llmops import streamed_files
from llmops.errors import FieldErrors, ValidationFailed
from llmops.parsers import json_loads
from llmops.streamed_files import csv_stream

ROW_FIELDS = ("variables", "expected_output", "reference", "tags")
# Written by the export, ignored by the import.
EXPORT_ONLY_FIELDS = ("id", "position")
VARIABLE_COLUMN_PREFIX = "var."
CSV_COLUMNS = ["id", "position", "variables", "expected_output", "reference", "tags"]


@dataclass(frozen=True)
class ExampleRow:
    """One input row, as read. `line` is the file's line number (1-based, as an editor shows it) or,
    for inline JSON, the index in `examples`; errors name it as `examples.<line>.<field>`."""

    line: int
    variables: Any = field(default_factory=dict)
    expected_output: Any = ""
    reference: Any = ""
    tags: Any = field(default_factory=list)
    problems: FieldErrors | None = None  # set when the row could not even be read


def _where(line: int) -> str:
    return f"examples.{line}"


def row_from_object(line: int, value: Any, *, exported: bool = False) -> ExampleRow:
    """A row from a JSON object: an inline example, or (`exported`: the export's own fields are
    ignored) a JSON Lines line."""
    if not isinstance(value, dict):
        return ExampleRow(line, problems={_where(line): ['Must be an object: {"variables": {...}, ...}.']})
    unknown = sorted(set(value) - set(ROW_FIELDS) - set(EXPORT_ONLY_FIELDS if exported else ()))
    if unknown:
        return ExampleRow(line, problems={f"{_where(line)}.{name}": ["Unknown field."] for name in unknown})
    given = {name: value[name] for name in ROW_FIELDS if name in value}
    return ExampleRow(line, **given)


def rows_from_items(items: Iterable[Any]) -> Iterator[ExampleRow]:
    """Inline examples (a JSON body's list); `line` is the 0-based index."""
    for index, item in enumerate(items):
        yield row_from_object(index, item)


def text_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """UTF-8 lines of an uploaded file; a line that is not is an error on `examples.<line>`."""
    return streamed_files.text_lines(chunks, field_prefix="examples")


def rows_from_jsonl(lines: Iterable[str]) -> Iterator[ExampleRow]:
    """JSON Lines: one example object per line. Blank lines are skipped (their numbers still count)."""
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            value = json_loads(text)  # the API's bounds: a deeply nested line is a bad row, not a 500
        except ValueError as exc:
            yield ExampleRow(number, problems={_where(number): [f"Invalid JSON: {exc}."]})
            continue
        if not isinstance(value, dict):
            yield ExampleRow(number, problems={_where(number): ["Each line must be a JSON object."]})
            continue
        yield row_from_object(number, value, exported=True)


def _tags_cell(cell: str) -> Any:
    """A JSON array, or comma-separated tags; a cell that is not valid JSON stays a string (refused)."""
    if cell.lstrip().startswith("["):
        try:
            return json_loads(cell)
        except ValueError:
            return cell
    return [tag.strip() for tag in cell.split(",") if tag.strip()]


def _csv_header(header: list[str]) -> list[str]:
    names = [name.strip() for name in header]
    problems: list[str] = []
    if not all(names) or len(set(names)) != len(names):
        problems.append("Empty or repeated column name in the header row.")
    known = {*ROW_FIELDS, *EXPORT_ONLY_FIELDS}
    unknown = [name for name in names if name and name not in known and not name.startswith(VARIABLE_COLUMN_PREFIX)]
    if unknown:
        problems.append(
            f"Unknown column(s): {', '.join(unknown)}. Use {', '.join(ROW_FIELDS)}, or var.<name> for a variable."
        )
    if any(name == VARIABLE_COLUMN_PREFIX for name in names):
        problems.append("A var.<name> column needs a name.")
    if problems:
        raise ValidationFailed("The CSV header is invalid.", fields={_where(1): problems})
    return names


def _csv_row(start: int, cells: dict[str, str]) -> ExampleRow:
    where = _where(start)
    given: dict[str, Any] = {}
    variables: Any = {}
    if "variables" in cells:
        try:
            variables = json_loads(cells["variables"])
        except ValueError as exc:
            return ExampleRow(start, problems={f"{where}.variables": [f"Invalid JSON: {exc}."]})
    for name, cell in cells.items():
        if not name.startswith(VARIABLE_COLUMN_PREFIX):
            continue
        variable = name.removeprefix(VARIABLE_COLUMN_PREFIX)
        if isinstance(variables, dict):
            if variable in variables:
                return ExampleRow(start, problems={f"{where}.variables.{variable}": ["Given twice."]})
            variables = {**variables, variable: cell}
    given["variables"] = variables
    for name in ("expected_output", "reference"):
        if name in cells:
            given[name] = cells[name]
    if "tags" in cells:
        given["tags"] = _tags_cell(cells["tags"])
    return ExampleRow(start, **given)


def rows_from_csv(lines: Iterable[str]) -> Iterator[ExampleRow]:
    """CSV (the columns of this module's docstring). `lines` must keep their line endings, for quoted
    multi-line cells; a row's `line` is the line it starts on."""
    reader = csv.reader(lines)
    try:
        header = next(reader, None)
        if header is None:
            return
        names = _csv_header(header)
        end = reader.line_num
        for record in reader:
            start, end = end + 1, reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if len(record) != len(names):
                yield ExampleRow(start, problems={_where(start): [f"Expected {len(names)} fields, got {len(record)}."]})
                continue
            cells = {name: cell for name, cell in zip(names, record, strict=True) if cell != ""}
            yield _csv_row(start, cells)
    except csv.Error as exc:
        line = reader.line_num
        raise ValidationFailed(f"CSV error on line {line}: {exc}.", fields={_where(line): [str(exc)]}) from None


def example_record(example: Example) -> dict[str, Any]:
    """One example as exported (a JSON Lines line)."""
    return {
        "id": str(example.pk),
        "position": example.position,
        "variables": example.variables,
        "expected_output": example.expected_output,
        "reference": example.reference,
        "tags": example.tags,
    }


def export_jsonl(version: DatasetVersion) -> Iterator[bytes]:
    """The version's examples as JSON Lines, in position order, fetched CHUNK_SIZE at a time."""
    for example in examples_iter(version=version, chunk_size=CHUNK_SIZE):
        yield (json.dumps(example_record(example), ensure_ascii=False) + "\n").encode()


def _csv_record(example: Example) -> list[Any]:
    record = example_record(example)
    record["variables"] = json.dumps(record["variables"], ensure_ascii=False)
    record["tags"] = json.dumps(record["tags"], ensure_ascii=False)
    return [record[name] for name in CSV_COLUMNS]


def export_csv(version: DatasetVersion) -> Iterator[bytes]:
    """The version's examples as CSV (header row first; `variables` and `tags` as JSON text)."""
    return csv_stream(CSV_COLUMNS, map(_csv_record, examples_iter(version=version, chunk_size=CHUNK_SIZE)))
