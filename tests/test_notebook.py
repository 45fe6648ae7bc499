"""The sensitivity-tuning notebook runs headless, top to bottom, on its bundled synthetic data."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parent.parent / "notebooks" / "sensitivity_tuning.ipynb"


@pytest.mark.slow
def test_notebook_executes_and_recommends(tmp_path: Path) -> None:
    copy = tmp_path / NOTEBOOK.name
    shutil.copy(NOTEBOOK, copy)
    nb = nbformat.read(copy, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "recommended: sensitivity" in printed and "alerts/week" in printed
    assert (tmp_path / "sensitivity_tradeoff.png").read_bytes().startswith(b"\x89PNG")
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
