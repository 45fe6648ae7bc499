"""`python -m smartmetrics.app.notebook`: run the sensitivity-tuning notebook headless, without Jupyter.

The notebook executes top to bottom in a kernel of this Python (nbclient and ipykernel come with
the `test` extra that `make` installs), from its own folder so its relative paths hold, and the
executed copy, outputs and figures included, is written to `--out` (default `out/notebook/`); the
notebook in `notebooks/` is never modified. Parameters of its first cell can be set with
`-p NAME=VALUE` (a Python literal, else a string); `--figures DIR` also writes its figures as PNG
files there (`--figures notebooks` refreshes the pictures the README shows).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from smartmetrics.adapters.store import write_atomic

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "sensitivity_tuning.ipynb"
INJECTED = "injected-parameters"


def render_parameters(nb: Any, values: Mapping[str, Any]) -> Any:
    """The notebook with a cell setting `values` right after its parameters cell (the one tagged
    `parameters`, else the first code cell), as papermill does; the notebook given is not changed."""
    import copy

    import nbformat

    nb = copy.deepcopy(nb)
    if not values:
        return nb
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    tagged = [i for i in code if "parameters" in nb.cells[i].get("metadata", {}).get("tags", [])]
    at = (tagged or code or [-1])[0] + 1
    cell = nbformat.v4.new_code_cell("\n".join(f"{name} = {value!r}" for name, value in values.items()))
    cell.metadata["tags"] = [INJECTED]
    nb.cells.insert(at, cell)
    return nb


def run_notebook(path: str | Path, out_dir: str | Path, parameters: Mapping[str, Any] | None = None,
                 timeout: int = 1800) -> Path:
    """Execute the notebook at `path` with `parameters` and write the executed copy into `out_dir`
    atomically; returns its path. Raises `nbclient.exceptions.CellExecutionError` on a failing cell."""
    import nbformat
    from nbclient import NotebookClient

    path = Path(path).resolve()
    nb = render_parameters(nbformat.read(path, as_version=4), parameters or {})
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    finally:
        target = _write_notebook(nb, Path(out_dir) / path.name)
    return target


def _write_notebook(nb: Any, target: Path) -> Path:
    """Write a notebook atomically (temp file, then rename)."""
    import nbformat

    target.parent.mkdir(parents=True, exist_ok=True)
    text = nbformat.writes(nb).encode("utf-8")
    return write_atomic(target, lambda fh: fh.write(text), f".{target.name}.", ".tmp")


def parse_parameter(text: str) -> tuple[str, Any]:
    """`NAME=VALUE` with VALUE a Python literal, else taken as a string.

    >>> parse_parameter("DAYS=7"), parse_parameter("SOURCE=config"), parse_parameter("CSV_PATHS=['a.csv']")
    (('DAYS', 7), ('SOURCE', 'config'), ('CSV_PATHS', ['a.csv']))
    """
    name, sep, value = text.partition("=")
    if not sep or not name.strip().isidentifier():
        raise ValueError(f"parameter {text!r} must look like NAME=VALUE")
    try:
        return name.strip(), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name.strip(), value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the notebook; exit 0, 1 when a cell fails, 2 on bad usage or a missing nbclient."""
    parser = argparse.ArgumentParser(prog="python -m smartmetrics.app.notebook", description=__doc__.split("\n\n")[0])
    parser.add_argument("--notebook", default=str(NOTEBOOK), help="the notebook (default: %(default)s)")
    parser.add_argument("--out", default="out/notebook", help="folder for the executed copy (default: %(default)s)")
    parser.add_argument("--figures", metavar="DIR", help="also write the figures as PNG files into DIR")
    parser.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
                        help="set a parameter of the notebook's first cell (repeatable)")
    args = parser.parse_args(argv)
    try:
        import nbclient  # noqa: F401
        parameters = dict(parse_parameter(p) for p in args.parameter)
    except ImportError:
        print("error: nbclient is not installed: pip install -e '.[test]' (or run `make`)", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.figures:
        parameters["FIGURES"] = str(Path(args.figures).resolve())
    from nbclient.exceptions import CellExecutionError

    print(f"running {args.notebook} (a few minutes on 2 cores) ...", flush=True)
    try:
        target = run_notebook(args.notebook, args.out, parameters)
    except CellExecutionError as exc:
        print(f"error: a cell failed; the executed copy is in {args.out}\n{exc}", file=sys.stderr)
        return 1
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
