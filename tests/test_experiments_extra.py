"""The experiments' libraries are an optional extra: the service does not depend on them, and the
``niteru experiments`` commands say how to install them when they are missing (simulated here by
refusing the import, as an interpreter without the extra would)."""

from __future__ import annotations

import importlib
import sys
import tomllib
from pathlib import Path

import pytest
import typer
from packaging.requirements import Requirement
from typer.testing import CliRunner

from cli.experiments import EXTRA_MODULES, experiments_extra
from cli.main import app
from tests.conftest import REPO

HINT = "pip install 'niteru[experiments]'"


def test_the_service_does_not_depend_on_the_extra() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extra = {Requirement(r).name for r in project["optional-dependencies"]["experiments"]}
    service = {Requirement(r).name for r in project["dependencies"]}
    assert extra == {"faiss-cpu", "ngt", "pyyaml", "matplotlib"}
    assert not extra & service


@pytest.mark.parametrize("module", EXTRA_MODULES)
def test_pq_without_the_extra_says_how_to_install_it(
    module: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    out = tmp_path / "r"
    result = CliRunner().invoke(app, ["experiments", "pq", "--vectors", str(tmp_path / "v.npy"), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert HINT in result.output and f"{module} missing" in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_report_without_matplotlib_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = CliRunner().invoke(app, ["experiments", "report", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert HINT in result.output and "matplotlib missing" in result.output


def test_a_missing_module_met_during_a_run_gets_the_same_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """faiss and matplotlib are imported deep inside a run; refusing one there still ends in the hint."""
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(typer.Exit) as stopped, experiments_extra():
        importlib.import_module("faiss")
    assert stopped.value.exit_code == 2
    assert HINT in capsys.readouterr().err
    with pytest.raises(ModuleNotFoundError), experiments_extra():  # not the extra's: left alone
        importlib.import_module("no_such_module_anywhere")
