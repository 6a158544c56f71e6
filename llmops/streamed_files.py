"""Files read and written as streams, line by line, never held whole: what batches (runs.batch_files)
and datasets (evals.dataset_files) both import and export."""

import codecs
import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any

from llmops.errors import ValidationFailed


def text_lines(chunks: Iterable[bytes], *, field_prefix: str) -> Iterator[str]:
    """UTF-8 lines (a BOM is dropped) of a binary file iterated line by line, such as an upload. A line
    that is not UTF-8 is a ValidationFailed on `<field_prefix>.<line>`."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    for number, raw in enumerate(chunks, start=1):
        try:
            # Lines split at b"\n" never cut a UTF-8 sequence, so each decodes on its own.
            yield decoder.decode(raw)
        except UnicodeDecodeError:
            raise ValidationFailed(
                f"The file is not UTF-8 text (line {number}).", fields={f"{field_prefix}.{number}": ["Not UTF-8."]}
            ) from None


def csv_stream(header: list[str], rows: Iterable[list[Any]]) -> Iterator[bytes]:
    """CSV bytes, the header row first, then one chunk per row as each row is produced."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> bytes:
        data = buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        return data

    writer.writerow(header)
    yield flush()
    for row in rows:
        writer.writerow(row)
        yield flush()
