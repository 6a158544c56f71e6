"""Batch file formats: the rows a batch is created from (inline JSON, JSON Lines, CSV) and its
results written out (JSON Lines, CSV), both streamed line by line."""

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from llmops import streamed_files
from llmops.errors import FieldErrors, ValidationFailed
from llmops.money import money_str
from llmops.parsers import json_loads
from llmops.streamed_files import csv_stream
from runs.batch_selectors import CHUNK_SIZE, batch_items, item_result
from runs.models import Batch


@dataclass(frozen=True)
class BatchRow:
    """One input row. `line` is the file's line number (1-based, as an editor shows it) or, for
    inline JSON, the index in `items`; errors name it as `items.<line>`."""

    line: int
    variables: Any
    key: Any = None  # the caller's key (a string or integer) or None for "the line number"
    # CSV cells are all strings: convert them to the version's declared variable types.
    text_values: bool = False
    problems: FieldErrors | None = None  # set when the row could not even be read



def rows_from_items(items: Iterable[Any]) -> Iterator[BatchRow]:
    """Inline items: `{"variables": {...}, "key": "..."}` each; `line` is the 0-based index."""
    for index, item in enumerate(items):
        where = f"items.{index}"
        if not isinstance(item, dict):
            yield BatchRow(index, None, problems={where: ['Must be an object: {"variables": {...}, "key": "..."}.']})
            continue
        unknown = sorted(set(item) - {"variables", "key"})
        if unknown:
            yield BatchRow(index, None, problems={f"{where}.{name}": ["Unknown field."] for name in unknown})
            continue
        yield BatchRow(index, item.get("variables", {}), item.get("key"))



def text_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """UTF-8 lines of an uploaded file; a line that is not is an error on `items.<line>`."""
    return streamed_files.text_lines(chunks, field_prefix="items")


def rows_from_jsonl(lines: Iterable[str]) -> Iterator[BatchRow]:
    """JSON Lines: each line `{"variables": {...}, "key": ...}` or a bare variables object. Blank
    lines are skipped (their numbers still count)."""
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        where = f"items.{number}"
        try:
            value = json_loads(text)  # the API's bounds: a deeply nested line is a bad row, not a 500
        except ValueError as exc:
            yield BatchRow(number, None, problems={where: [f"Invalid JSON: {exc}."]})
            continue
        if not isinstance(value, dict):
            yield BatchRow(number, None, problems={where: ["Each line must be a JSON object."]})
        elif "variables" in value and set(value) <= {"variables", "key"}:
            yield BatchRow(number, value["variables"], value.get("key"))
        else:
            yield BatchRow(number, value)



def rows_from_csv(lines: Iterable[str]) -> Iterator[BatchRow]:
    """CSV with a header row of variable names, plus an optional `key` column. Cells are converted
    to the declared types when the batch is created; an empty cell means "not given" (so a
    default applies). `lines` must keep their line endings, for quoted multi-line cells."""
    reader = csv.reader(lines)
    try:
        header = next(reader, None)
        if header is None:
            return
        names = [name.strip() for name in header]
        if not all(names) or len(set(names)) != len(names):
            raise ValidationFailed(
                "The CSV header must name each column once.",
                fields={"items.1": ["Empty or repeated column name in the header row."]},
            )
        end = reader.line_num
        for record in reader:
            start, end = end + 1, reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if len(record) != len(names):
                yield BatchRow(
                    start, None, problems={f"items.{start}": [f"Expected {len(names)} fields, got {len(record)}."]}
                )
                continue
            cells = {name: cell for name, cell in zip(names, record, strict=True) if cell != ""}
            key = cells.pop("key", None)
            yield BatchRow(start, cells, key, text_values=True)
    except csv.Error as exc:
        line = reader.line_num
        raise ValidationFailed(f"CSV error on line {line}: {exc}.", fields={f"items.{line}": [str(exc)]}) from None



def typed_cells(values: dict[str, Any], schema: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """CSV cells as the declared types; a cell that does not convert stays a string, so the
    renderer reports the expected type."""
    typed: dict[str, Any] = {}
    for name, value in values.items():
        type_name = schema.get(name, {}).get("type", "string")
        if type_name == "string":
            typed[name] = value
        elif type_name == "boolean":
            typed[name] = {"true": True, "false": False, "1": True, "0": False}.get(value.strip().lower(), value)
        else:
            try:
                typed[name] = json_loads(value)
            except ValueError:
                typed[name] = value
    return typed



def row_key(row: BatchRow) -> str | None:
    """The key a row's item gets: the caller's, or its line number. None when the key is unusable."""
    if row.key is None or row.key == "":
        return str(row.line)
    if isinstance(row.key, bool) or not isinstance(row.key, (str, int)):
        return None
    return str(row.key)



CSV_COLUMNS = [
    "key",
    "line",
    "status",
    "variables",
    "output",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "latency_ms",
    "error_code",
    "error_message",
    "run_id",
]



def _csv_row(result: dict[str, Any]) -> list[Any]:
    """A flat row of `batch_selectors.item_result`: the item, then its run's public fields."""
    run = result["run"] or {}
    usage = run.get("usage") or {}
    cost = run.get("cost") or {}
    error = result["error"] or {}
    return [
        result["key"],
        result["line"],
        result["status"],
        json.dumps(result["variables"], ensure_ascii=False),
        run.get("output") or "",
        _blank_if_none(usage.get("prompt_tokens")),
        _blank_if_none(usage.get("completion_tokens")),
        _blank_if_none(usage.get("total_tokens")),
        money_str(Decimal(cost["amount"])) if cost.get("amount") is not None else "",
        _blank_if_none(run.get("latency_ms")),
        error.get("code", ""),
        error.get("message", ""),
        run.get("id") or "",
    ]


def _blank_if_none(value: Any) -> Any:
    return "" if value is None else value


def results_jsonl(batch: Batch) -> Iterator[bytes]:
    """The batch's results as JSON Lines, one item per line, fetched CHUNK_SIZE items at a time."""
    for item in batch_items(batch=batch).iterator(chunk_size=CHUNK_SIZE):
        yield (json.dumps(item_result(item), ensure_ascii=False) + "\n").encode()



def results_csv(batch: Batch) -> Iterator[bytes]:
    """The batch's results as CSV (header row first), fetched CHUNK_SIZE items at a time."""
    items = batch_items(batch=batch).iterator(chunk_size=CHUNK_SIZE)
    return csv_stream(CSV_COLUMNS, (_csv_row(item_result(item)) for item in items))
