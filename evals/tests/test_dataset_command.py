"""`manage.py dataset`: create, import (bad rows by line, nothing added), export round trip, add-run, list."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from evals.models import Dataset, Example
from runs.tests.factories import RunFactory

pytestmark = pytest.mark.django_db


def test_create_import_list_export_round_trip(alice, tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text('{"variables": {"q": "x"}, "expected_output": "X", "tags": ["t"]}\n{"expected_output": "Y"}\n')
    out = tmp_path / "out.csv"

    call_command("dataset", "create", "qa", "--owner", "alice", "--description", "d")
    call_command("dataset", "import", "qa", str(source), "--owner", "alice")
    call_command("dataset", "list", "--owner", "alice")
    call_command("dataset", "export", "qa", "--owner", "alice", "--format", "csv", "--output", str(out))
    call_command("dataset", "create", "copy", "--project", alice.personal_project.slug)
    call_command("dataset", "import", "copy", str(out), "--project", alice.personal_project.slug)

    assert "qa\tv1\t2 examples" in capsys.readouterr().out
    copy = Dataset.objects.get(name="copy")
    assert copy.created_by is None
    assert [(e.variables, e.expected_output, e.tags) for e in Example.objects.filter(dataset=copy)] == [
        ({"q": "x"}, "X", ["t"]),
        ({}, "Y", []),
    ]


def test_a_bad_file_adds_nothing_and_names_the_line(alice, tmp_path):
    call_command("dataset", "create", "qa", "--owner", "alice")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"expected_output": "fine"}\n{"tags": 3}\n')

    with pytest.raises(CommandError, match=r"examples\.2\.tags"):
        call_command("dataset", "import", "qa", str(bad), "--owner", "alice")

    assert not Example.objects.exists()


def test_add_run_and_unknown_names(alice, bob):
    call_command("dataset", "create", "qa", "--owner", "alice")
    run = RunFactory(owner=alice, output="Hi.")

    call_command("dataset", "add-run", "qa", str(run.pk), "--owner", "alice", "--tag", "cli")

    example = Example.objects.get()
    assert (example.expected_output, example.tags, example.source_run_id) == ("Hi.", ["cli"], run.pk)
    with pytest.raises(CommandError, match="Dataset not found"):
        call_command("dataset", "add-run", "qa", str(run.pk), "--owner", "bob")
    with pytest.raises(CommandError, match="No such run"):
        call_command("dataset", "add-run", "qa", str(RunFactory(owner=bob).pk), "--owner", "alice")
