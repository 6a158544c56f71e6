"""The import contracts (.importlinter) hold for the code, and catch what they are there to catch:
an app importing one above it, and an import cycle between two modules of one app."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APPS = ["llmops", "accounts", "prompts", "providers", "runs", "billing", "webhooks", "gateway", "evals"]
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own venv's tool on our own tree
        [LINT_IMPORTS, "--no-cache", "--config", str(tree / ".importlinter")],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the apps' Python files and the contracts, to break on purpose."""
    for app in APPS:
        shutil.copytree(ROOT / app, tmp_path / app, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    return tmp_path


def test_the_code_keeps_the_contracts(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_base_app_importing_an_app_above_it_breaks_them(tree: Path) -> None:
    services = tree / "accounts" / "services.py"
    services.write_text(services.read_text() + "\nfrom runs.models import Run  # noqa\n")

    result = _lint(tree)

    assert result.returncode != 0
    assert "accounts is not allowed to import runs" in result.stdout


def test_a_cycle_inside_an_app_breaks_them(tree: Path) -> None:
    # runs.batch_services imports runs.services; a call back the other way closes a cycle.
    services = tree / "runs" / "services.py"
    services.write_text(services.read_text() + "\nfrom runs import batch_services  # noqa\n")

    result = _lint(tree)

    assert result.returncode != 0
    assert "No cycles are allowed in runs" in result.stdout
