"""The sensitivity-tuning notebook runs headless, top to bottom, on its bundled synthetic data, with
the documented runner (nbclient; no Jupyter server, no nbconvert)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from smartmetrics.app.notebook import INJECTED, NOTEBOOK, main, parse_parameter, render_parameters

TRACKED = NOTEBOOK.parent


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_the_notebook_draws_through_show_and_writes_nothing_unless_asked() -> None:
    """Section 1 drew nothing (`plt.show()` under Agg) and the chart cell overwrote the tracked PNG."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    sources = [c.source for c in code_cells(nb)]
    assert not any("plt.show()" in s or "savefig" in s for s in sources)
    drawing = [s for s in sources if "plt.subplots" in s or "render_tradeoff_figure(" in s]
    assert len(drawing) == 2 and all('show(fig, "' in s for s in drawing)
    assert "FIGURES = None" in sources[0]
    assert not any(c.get("outputs") for c in code_cells(nb))  # committed without outputs


def test_parameters_are_injected_after_the_parameters_cell() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    injected = render_parameters(nb, {"DAYS": 7, "FIGURES": "/tmp/x"})
    assert len(injected.cells) == len(nb.cells) + 1 and len(nb.cells) == len(nbformat.read(NOTEBOOK, 4).cells)
    at = next(i for i, c in enumerate(injected.cells) if INJECTED in c.metadata.get("tags", []))
    assert "parameters" in injected.cells[at - 1].metadata["tags"]
    assert injected.cells[at].source == "DAYS = 7\nFIGURES = '/tmp/x'"
    assert parse_parameter("BUDGET=2/week") == ("BUDGET", "2/week")
    with pytest.raises(ValueError):
        parse_parameter("no equals sign")
    assert main(["-p", "1x=2"]) == 2


@pytest.mark.slow
def test_notebook_runs_with_the_runner_shows_each_figure_and_leaves_the_folder_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {p.name: p.read_bytes() for p in TRACKED.iterdir() if p.is_file()}
    assert main(["--out", str(tmp_path / "out"), "--figures", str(tmp_path / "fig")]) == 0
    assert "wrote" in capsys.readouterr().out
    nb = nbformat.read(tmp_path / "out" / NOTEBOOK.name, as_version=4)
    outputs = [o for c in code_cells(nb) for o in c.get("outputs", [])]
    assert not any(o.get("output_type") == "error" for o in outputs)
    for cell in code_cells(nb):
        if 'show(fig, "' in cell.source:  # every figure cell has the figure among its outputs
            assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell.source[:60]
    printed = "".join(o.get("text", "") for o in outputs)
    assert "recommended: sensitivity" in printed and "alerts/week" in printed
    for name in ("sensitivity_bands.png", "sensitivity_tradeoff.png"):
        assert (tmp_path / "fig" / name).read_bytes().startswith(b"\x89PNG")
    after = {p.name: p.read_bytes() for p in TRACKED.iterdir() if p.is_file()}
    assert after == before  # the tracked notebook and pictures are untouched
    json.loads((tmp_path / "out" / NOTEBOOK.name).read_text())  # a valid notebook file
