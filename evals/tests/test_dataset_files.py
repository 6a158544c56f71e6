"""Dataset files: JSON Lines and CSV imports (bad rows reported by line, nothing half-imported),
exports of a version in both formats (streamed, from an iterator), and the round trip of both."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.db.models.query import QuerySet
from django.test.utils import CaptureQueriesContext

from evals import dataset_files, dataset_services
from evals.models import DatasetVersion, Example
from evals.tests.factories import DatasetFactory, dataset_with_examples

pytestmark = pytest.mark.django_db

URL = "/api/v1/datasets"
TRICKY = [
    {
        "variables": {"q": "a, b", "n": 3, "nested": {"x": [1, 2]}},
        "expected_output": "line 1\nline 2",
        "tags": ["a,b", "c"],
    },
    {"variables": {}, "expected_output": 'quotes "here"', "reference": "ünïcode ✓", "tags": []},
]


@pytest.fixture
def qa(alice):
    return DatasetFactory(owner=alice, name="qa")


def _import(client, name, content, **fields):
    upload = SimpleUploadedFile(name, content.encode())
    return client.post(f"{URL}/qa/import", {"file": upload, **fields}, format="multipart")


def _contents(dataset, number=None):
    dataset.refresh_from_db()
    number = number or dataset.latest_version_number
    version = DatasetVersion.objects.get(dataset=dataset, number=number)
    return [
        {"variables": e.variables, "expected_output": e.expected_output, "reference": e.reference, "tags": e.tags}
        for e in Example.objects.filter(dataset=dataset, added_in__lte=version.number).order_by("position")
        if e.removed_in is None or e.removed_in > version.number
    ]


def _body(response) -> str:
    return b"".join(response.streaming_content).decode()


def test_jsonl_import(alice_client, qa):
    content = '{"variables": {"q": "x"}, "expected_output": "X", "tags": ["t"]}\n\n{"reference": "r"}\n'

    response = _import(alice_client, "rows.jsonl", content, note="from a file")

    assert response.status_code == 201, response.content
    assert (response.json()["number"], response.json()["added_count"], response.json()["note"]) == (1, 2, "from a file")
    assert _contents(qa) == [
        {"variables": {"q": "x"}, "expected_output": "X", "reference": "", "tags": ["t"]},
        {"variables": {}, "expected_output": "", "reference": "r", "tags": []},
    ]


def test_csv_import_with_var_columns_json_variables_and_both_tag_forms(alice_client, qa):
    content = (
        "var.city,variables,expected_output,tags,reference\n"
        'Paris,"{""n"": 2}",France,"geo, capital",\n'
        'Rome,,"Italy\non two lines","[""geo""]",notes\n'
    )

    response = _import(alice_client, "rows.csv", content)

    assert response.status_code == 201, response.content
    assert _contents(qa) == [
        {
            "variables": {"n": 2, "city": "Paris"},
            "expected_output": "France",
            "reference": "",
            "tags": ["geo", "capital"],
        },
        {
            "variables": {"city": "Rome"},
            "expected_output": "Italy\non two lines",
            "reference": "notes",
            "tags": ["geo"],
        },
    ]


def test_jsonl_bad_lines_are_reported_by_line_and_nothing_is_written(alice_client, alice, qa):
    dataset_services.examples_append(project=alice.personal_project, dataset=qa, examples=[{}], created_by=alice)
    content = "\n".join(
        [
            '{"expected_output": "fine"}',
            "{not json",
            "",
            '{"variables": [1]}',
            '["an array"]',
            '{"tags": "x", "who": 1}',
            '{"expected_output": "also fine"}',
        ]
    )

    response = _import(alice_client, "rows.jsonl", content)

    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error["fields"]) == {"examples.2", "examples.4.variables", "examples.5", "examples.6.who"}
    assert Example.objects.filter(dataset=qa).count() == 1
    qa.refresh_from_db()
    assert (qa.latest_version_number, qa.last_position) == (1, 1)


def test_csv_bad_rows_are_reported_by_the_line_they_start_on(alice_client, qa):
    content = (
        "var.q,tags,variables\n"
        'ok,"[""t""]",\n'
        "\"two\nlines\",'not json',\n"  # a tag cell that is neither a JSON array nor plain
        "x,,[1]\n"
        "too,many,cells,here\n"
        'a,"[""bad""",\n'
    )

    response = _import(alice_client, "rows.csv", content)

    assert response.status_code == 400, response.content
    assert set(response.json()["error"]["fields"]) == {
        "examples.5.variables",
        "examples.6",
        "examples.7.tags",
    }
    assert not Example.objects.filter(dataset=qa).exists()


@pytest.mark.parametrize(
    "header, problem",
    [("q,expected_output", "Unknown column"), ("var.,tags", "needs a name"), ("tags,tags", "repeated")],
)
def test_a_bad_csv_header_is_line_1(alice_client, qa, header, problem):
    response = _import(alice_client, "rows.csv", f"{header}\nx,y\n")

    assert response.status_code == 400
    problems = response.json()["error"]["fields"]["examples.1"]
    assert any(problem in text for text in problems), problems


def test_variable_given_twice_in_a_csv_row(alice_client, qa):
    response = _import(alice_client, "rows.csv", 'variables,var.q\n"{""q"": 1}",2\n')

    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"examples.2.variables.q"}


def test_not_utf8_empty_and_format_by_name(alice_client, qa):
    latin1 = alice_client.post(
        f"{URL}/qa/import",
        {"file": SimpleUploadedFile("x.jsonl", '{"expected_output": "é"}'.encode("latin-1"))},
        format="multipart",
    )
    empty = _import(alice_client, "x.jsonl", "")
    as_csv = _import(alice_client, "rows.txt", "expected_output\nfrom csv\n", format="csv")
    by_name = _import(alice_client, "rows.CSV", "expected_output\nfrom name\n")

    assert latin1.status_code == 400 and set(latin1.json()["error"]["fields"]) == {"examples.1"}
    assert empty.status_code == 400
    assert as_csv.status_code == 201 and by_name.status_code == 201, (as_csv.content, by_name.content)
    assert [row["expected_output"] for row in _contents(qa)] == ["from csv", "from name"]


def test_import_needs_multipart_and_a_known_format(alice_client, qa):
    as_json = alice_client.post(f"{URL}/qa/import", {"file": "x"}, format="json")
    bad_format = _import(alice_client, "x.jsonl", "{}\n", format="xml")
    no_file = alice_client.post(f"{URL}/qa/import", {"format": "csv"}, format="multipart")

    assert as_json.status_code == 415
    assert bad_format.status_code == 400 and "format" in bad_format.json()["error"]["fields"]
    assert no_file.status_code == 400 and "file" in no_file.json()["error"]["fields"]


@pytest.mark.parametrize("file_format", ["jsonl", "csv"])
def test_round_trip(alice_client, alice, file_format):
    source = dataset_with_examples(alice.personal_project, TRICKY, name="source")
    target = DatasetFactory(owner=alice, name="qa")

    exported = alice_client.get(f"{URL}/source/export", {"format": file_format})
    assert exported.status_code == 200
    assert exported.streaming
    assert f'filename="source-v1.{file_format}"' in exported["Content-Disposition"]
    content = _body(exported)
    imported = _import(alice_client, f"back.{file_format}", content)

    assert imported.status_code == 201, imported.content
    assert _contents(target) == _contents(source) == [{"reference": "", **row} for row in TRICKY]


def test_export_of_an_old_version_and_its_lines(alice_client, alice):
    dataset = dataset_with_examples(alice.personal_project, TRICKY, name="qa")
    first = Example.objects.filter(dataset=dataset).order_by("position").first()
    dataset_services.examples_remove(
        project=alice.personal_project, dataset=dataset, ids=[str(first.pk)], created_by=alice
    )

    old = _body(alice_client.get(f"{URL}/qa/export", {"version": 1}))
    latest = _body(alice_client.get(f"{URL}/qa/export"))
    csv_latest = _body(alice_client.get(f"{URL}/qa/export", {"format": "csv"}))

    assert [json.loads(line)["position"] for line in old.splitlines()] == [1, 2]
    assert [json.loads(line)["id"] for line in latest.splitlines()] == [str(Example.objects.get(position=2).pk)]
    assert csv_latest.splitlines()[0] == ",".join(dataset_files.CSV_COLUMNS)
    assert len(csv_latest.splitlines()) == 2


def test_export_errors_are_json(alice_client, alice):
    dataset_with_examples(alice.personal_project, TRICKY, name="qa")
    DatasetFactory(owner=alice, name="empty")

    unknown_format = alice_client.get(f"{URL}/qa/export?format=")
    no_version = alice_client.get(f"{URL}/qa/export", {"version": 5, "format": "csv"})
    empty = alice_client.get(f"{URL}/empty/export")

    for response in (unknown_format, no_version, empty):
        assert response.status_code == 404
        assert response["Content-Type"].startswith("application/json")
        assert response.json()["error"]["code"] == "not_found"


def test_export_streams_from_an_iterator_with_constant_queries(alice_client, alice, monkeypatch):
    """The rows are fetched through QuerySet.iterator (never a whole list), and the number of queries
    does not grow with the rows."""
    many = dataset_with_examples(
        alice.personal_project, [{"expected_output": str(i)} for i in range(1200)], name="many"
    )
    dataset_with_examples(alice.personal_project, [{"expected_output": "x"}], name="one")
    fetch_all = QuerySet._fetch_all

    def no_list_of_examples(self):
        assert self.model is not Example, "examples were loaded as a list"
        return fetch_all(self)

    monkeypatch.setattr(QuerySet, "_fetch_all", no_list_of_examples)
    alice_client.get(f"{URL}/one")  # the key's first use records it: not counted below
    counts = {}
    for name in ("many", "one"):
        with CaptureQueriesContext(connection) as queries:
            body = _body(alice_client.get(f"{URL}/{name}/export", {"format": "csv"}))
        counts[name] = len(queries.captured_queries)
        assert len(body.splitlines()) == (1200 if name == "many" else 1) + 1  # and the header

    assert counts["many"] == counts["one"]
    assert many.latest_version_number == 1


def test_readers_are_lazy():
    """A reader takes a line at a time: the rest of the file is not read before its rows are used."""
    consumed = []

    def lines():
        for number in range(1, 1000):
            consumed.append(number)
            yield json.dumps({"expected_output": str(number)}) + "\n"

    rows = dataset_files.rows_from_jsonl(lines())
    first = next(rows)

    assert first.expected_output == "1" and consumed == [1]
