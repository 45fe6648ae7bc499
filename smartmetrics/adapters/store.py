"""The store: fitted baselines on disk, one file per baseline, versioned, atomic, pickle-free.

Layout: `<store>/<alias>/state.npz` — a NumPy archive (loaded with `allow_pickle=False`) holding
the forecast tables of every series of the baseline as float32 arrays on each series' own grid, and
their metadata (labels, curve type, models, coverage, fit time, data range) as a UTF-8 JSON
document stored as bytes. A baseline is written to a temporary file, flushed, fsynced and renamed
over the old one, so a crash mid-write leaves the previous state intact. A file that cannot be read
raises `StoreError`; `load_store` logs and counts it and carries on with the rest.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from smartmetrics.engine.state import COLUMNS, BaselineState, SeriesBand, stack_columns

SCHEMA_VERSION = 1
STATE_FILE = "state.npz"

log = logging.getLogger(__name__)


class StoreError(Exception):
    """A stored baseline that cannot be used (corrupt, unreadable, or from an unknown schema)."""


_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def baseline_dir(root: str | Path, alias: str) -> Path:
    """The folder of one baseline; aliases are config keys, made file-system safe."""
    return Path(root) / _SAFE.sub("_", alias)


def render_state(state: BaselineState) -> dict[str, np.ndarray]:
    """The arrays of the archive: a JSON header plus one padded 2-D float table per column."""
    tables = dict(zip(COLUMNS, stack_columns(state.series)))
    header = {
        "schema_version": SCHEMA_VERSION,
        "alias": state.alias,
        "fitted_at": state.fitted_at,
        "meta": state.meta,
        "series": [
            {"labels": b.labels, "start": b.start, "step": b.step, "points": len(b.yhat), "meta": b.meta}
            for b in state.series
        ],
    }
    blob = np.frombuffer(json.dumps(header, sort_keys=True, allow_nan=False).encode(), dtype=np.uint8)
    return {"header": blob, **tables}


class _Entry(BaseModel):
    """One series in the header, as `render_state` writes it."""

    model_config = ConfigDict(extra="ignore")
    labels: dict[StrictStr, StrictStr]
    start: StrictInt
    step: int = Field(gt=0)
    points: int = Field(ge=0)
    meta: dict[str, Any] = {}


class _Header(BaseModel):
    """The archive's JSON header: checked as a whole before anything of it is used."""

    model_config = ConfigDict(extra="ignore")
    schema_version: int
    alias: StrictStr
    fitted_at: float = Field(allow_inf_nan=False)
    meta: dict[str, Any] = {}
    series: list[_Entry]


def parse_state(arrays: dict[str, np.ndarray]) -> BaselineState:
    """A `BaselineState` from the archive's arrays; `StoreError` when they do not fit the schema."""
    header = _valid_header(arrays)
    if header is None:
        header = _checked_header(arrays)
    return _bands(header, arrays)


def _valid_header(arrays: dict[str, np.ndarray]) -> _Header | None:
    """The header, parsed and checked in one pass by pydantic's JSON reader (twice as fast as
    `json.loads` then validation: it matters at 100k series); None if anything is off, for
    `_checked_header` to say what."""
    try:
        header = _Header.model_validate_json(arrays["header"].tobytes())
    except (KeyError, ValueError):  # pydantic's ValidationError is a ValueError
        return None
    return header if header.schema_version == SCHEMA_VERSION else None


def _checked_header(arrays: dict[str, np.ndarray]) -> _Header:
    """The header, or the `StoreError` that says what is wrong with it."""
    try:
        doc = json.loads(arrays["header"].tobytes().decode())
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"unreadable header: {exc}") from None
    if not isinstance(doc, dict):
        raise StoreError(f"invalid header: a JSON {type(doc).__name__}, not an object")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StoreError(f"schema version {version!r} is not supported (this build reads {SCHEMA_VERSION})")
    try:
        header = _Header.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise StoreError(f"invalid header at {where}: {first['msg']} ({exc.error_count()} problem(s))") from None
    return header


def _bands(header: _Header, arrays: dict[str, np.ndarray]) -> BaselineState:
    """The state the header describes, its columns views into the archive's tables (which the state
    keeps, for the exporter, when they are the float32 tables this version writes)."""
    n = len(header.series)
    tables = [arrays.get(name) for name in COLUMNS]
    for name, table in zip(COLUMNS, tables):
        if table is None or table.ndim != 2 or table.dtype.kind != "f" or len(table) < n:
            raise StoreError(f"inconsistent contents: table {name!r} does not hold the {n} series of the header")
    narrowest = min(range(len(COLUMNS)), key=lambda j: tables[j].shape[1])
    width = tables[narrowest].shape[1]
    yhat, lower, upper = tables
    bands = []
    for i, entry in enumerate(header.series):  # the header's dicts are fresh: no copy needed
        p = entry.points
        if p > width:
            raise StoreError(f"inconsistent contents: table {COLUMNS[narrowest]!r} does not hold series {i}'s "
                             f"{p} points")
        bands.append(SeriesBand(entry.labels, entry.start, entry.step, yhat[i, :p], lower[i, :p], upper[i, :p],
                                entry.meta))
    whole = width > 0 and all(t.shape == (n, width) and t.dtype == np.float32 for t in tables)
    return BaselineState(header.alias, header.fitted_at, tuple(bands), header.meta,
                         tables=(yhat, lower, upper) if whole else None)


def save_baseline(root: str | Path, state: BaselineState) -> Path:
    """Write one baseline atomically (temp file, fsync, rename); returns its path."""
    folder = baseline_dir(root, state.alias)
    folder.mkdir(parents=True, exist_ok=True)
    return write_atomic(folder / STATE_FILE, lambda fh: np.savez(fh, **render_state(state)),
                        f".state-{os.getpid()}-", ".npz.tmp")


def write_atomic(target: Path, write: Callable[[BinaryIO], Any], prefix: str, suffix: str) -> Path:
    """Have `write` fill a temporary file next to `target`, fsync it and rename it over `target`
    (and fsync the folder): a crash at any point leaves the previous file whole."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the store is not secret
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return target


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (directory entry flushed)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_baseline(path: str | Path) -> BaselineState:
    """Read one baseline file; `StoreError` for anything that is not a valid state."""
    with _collector_paused():
        return _read_baseline(path)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off meanwhile: reading a baseline builds a few objects per series,
    none of them in a cycle, and at 100k series the collector would walk the growing heap again and
    again for nothing (a third of the read's CPU time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read_baseline(path: str | Path) -> BaselineState:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError) as exc:
        raise StoreError(f"{path}: cannot read: {exc}") from None
    except Exception as exc:  # zipfile raises several unrelated types on damaged archives
        raise StoreError(f"{path}: corrupt archive: {exc!r}") from None
    try:
        return parse_state(arrays)
    except StoreError as exc:
        raise StoreError(f"{path}: {exc}") from None


def set_aside(path: Path) -> Path:
    """Rename an unusable state file next to itself (`state.npz.bad-<unix seconds>`), never delete it:
    whoever investigates has it, and the refit cannot overwrite it. Returns the new path (the old one
    if even the rename fails, e.g. on a read-only store)."""
    target = path.with_name(f"{path.name}.bad-{int(time.time())}")
    try:
        os.replace(path, target)
    except OSError as exc:
        log.error("store: cannot set aside %s: %s", path, exc)
        return path
    return target


def load_store(root: str | Path) -> tuple[dict[str, BaselineState], list[str]]:
    """Every readable baseline under root, and one message per file that could not be used."""
    states: dict[str, BaselineState] = {}
    errors: list[str] = []
    for path in sorted(Path(root).glob(f"*/{STATE_FILE}")):
        try:
            state = load_baseline(path)
            if baseline_dir(root, state.alias).name != path.parent.name:  # never merged into another
                raise StoreError(f"{path}: holds baseline {state.alias!r}, not the one of its folder")
        except StoreError as exc:
            kept = set_aside(path)
            log.error("store: %s; set aside as %s, the baseline will be refit", exc, kept.name)
            errors.append(str(exc))
            continue
        states[state.alias] = state
    for stray in Path(root).glob("*/.state-*.npz.tmp"):
        if not _written_now(stray):
            stray.unlink(missing_ok=True)  # left by a crash mid-write; the previous state is intact
    return states, errors


def _written_now(temp: Path) -> bool:
    """Whether a temporary state file (`.state-<pid>-...`, `save_baseline`) belongs to a process that
    is still running, i.e. is a write under way: any reader of the store (a daemon's reload,
    `smartmetrics classify`, a test polling the store) would otherwise pull it from under that
    process's rename. A file without a pid, or of a process gone, is a crash's leftover."""
    pid = temp.name.removeprefix(".state-").partition("-")[0]
    if not pid.isdigit() or int(pid) <= 0:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive, another user's
        return True
    return True
