"""Optional W&B export of finished runs, in W&B's offline mode (no network)."""

import json

import pytest
from django.core.management import CommandError, call_command

from billing.tests.factories import CostLogFactory
from runs.models import Run
from runs.tests.factories import RunFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def wandb_offline(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    settings.WANDB_PROJECT = "llmops-test"
    settings.WANDB_MODE = "offline"
    settings.WANDB_DIR = str(tmp_path)
    return tmp_path


def test_export_writes_a_table_of_the_finished_runs(wandb_offline, capsys):
    succeeded = CostLogFactory(run=RunFactory(output="Hello Ada.", latency_ms=120)).run
    failed = RunFactory(status=Run.Status.FAILED, output="", error_code="server_error")
    RunFactory(status=Run.Status.QUEUED, output="")  # not finished: not exported

    call_command("runs_export_wandb", "--name", "nightly")

    assert "Exported 2 runs (1 succeeded, 1 failed)" in capsys.readouterr().out
    tables = list(wandb_offline.glob("wandb/offline-run-*/files/media/table/*.table.json"))
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    rows = {row[0]: dict(zip(table["columns"], row, strict=True)) for row in table["data"]}
    assert set(rows) == {str(succeeded.pk), str(failed.pk)}
    assert rows[str(succeeded.pk)]["output"] == "Hello Ada."
    assert rows[str(succeeded.pk)]["cost_usd"] == pytest.approx(0.000018)
    assert rows[str(failed.pk)]["error_code"] == "server_error"


def test_export_filters_by_owner(wandb_offline, alice, bob, capsys):
    RunFactory(owner=alice)
    RunFactory(owner=bob)

    call_command("runs_export_wandb", "--owner", "alice")

    assert "Exported 1 runs" in capsys.readouterr().out


def test_export_is_off_unless_configured(settings):
    settings.WANDB_PROJECT = ""
    RunFactory()

    with pytest.raises(CommandError, match="WANDB_PROJECT"):
        call_command("runs_export_wandb")
