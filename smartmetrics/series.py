"""`Series`: one time series on a regular grid, gaps as NaN; pure helpers to build, read and write it.

Timestamps are Unix seconds (int64, UTC) spaced exactly `step` apart; values are float64 with NaN
where Prometheus returned nothing, NaN or ±Inf. Every later stage (classify, models, bands) takes
this shape and never has to think about irregular samples.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Series:
    """Values on the grid `start, start + step, ...`; `labels` are the series' labels without `__name__`."""

    labels: dict[str, str]
    timestamps: np.ndarray
    values: np.ndarray
    step: int
    name: str = ""
    meta: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.timestamps.shape != self.values.shape:
            raise ValueError("timestamps and values differ in length")
        if self.step <= 0:
            raise ValueError("step must be positive")

    def __len__(self) -> int:
        return len(self.values)

    @property
    def start(self) -> int:
        return int(self.timestamps[0]) if len(self) else 0

    @property
    def end(self) -> int:
        return int(self.timestamps[-1]) if len(self) else 0

    @property
    def observed(self) -> int:
        """How many grid points hold a finite value."""
        return int(np.isfinite(self.values).sum())

    @property
    def key(self) -> str:
        """A short stable identity for the label set (used in file names and the store)."""
        return labels_key(self.labels)

    def to_pandas(self) -> pd.Series:
        index = pd.to_datetime(self.timestamps, unit="s", utc=True)
        return pd.Series(self.values, index=index, name=self.name or None)


def on_grid(grid: np.ndarray, at: np.ndarray, *columns: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each column, sampled on the ascending timestamps `grid`, linearly interpolated at the times `at`;
    NaN outside the grid (never a stale guess).

    >>> [c.tolist() for c in on_grid(np.array([0, 60]), np.array([30, 90]), np.array([1.0, 3.0]))]
    [[2.0, nan]]
    """
    at = np.asarray(at, dtype=np.float64)
    if len(grid) == 0:
        return tuple(np.full(at.shape, np.nan) for _ in columns)
    grid = np.asarray(grid, dtype=np.float64)
    inside = (at >= grid[0]) & (at <= grid[-1])
    return tuple(np.where(inside, np.interp(at, grid, col), np.nan) for col in columns)


def labels_key(labels: dict[str, str]) -> str:
    """A 16-hex-digit digest of a label set, independent of key order.

    >>> labels_key({"b": "2", "a": "1"}) == labels_key({"a": "1", "b": "2"})
    True
    """
    text = json.dumps(sorted(labels.items()), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def format_labels(labels: dict[str, str]) -> str:
    """Labels as PromQL writes them: `{job="api", instance="a:9090"}`.

    >>> format_labels({"job": "api", "path": 'a"b'})
    '{job="api", path="a\\\\"b"}'
    """
    body = ", ".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def align_down(t: float, step: int) -> int:
    """The grid point at or before `t` on the grid of multiples of `step`."""
    return int(t // step) * step


def build_grid_series(
    labels: dict[str, str],
    times: np.ndarray,
    values: np.ndarray,
    start: int,
    end: int,
    step: int,
    name: str = "",
) -> Series:
    """Place (time, value) samples on the grid start..end; missing points, NaN and ±Inf become NaN.

    Samples off the grid are dropped; duplicates keep the last one.
    """
    n = (end - start) // step + 1
    grid = start + step * np.arange(n, dtype=np.int64)
    out = np.full(n, np.nan)
    times = np.asarray(times, dtype=np.float64)
    vals = np.asarray(values, dtype=np.float64)
    offset = (times - start) / step
    idx = np.rint(offset).astype(np.int64)
    ok = (np.abs(offset - idx) < 1e-6) & (idx >= 0) & (idx < n)
    out[idx[ok]] = vals[ok]
    out[~np.isfinite(out)] = np.nan
    return Series(labels=dict(labels), timestamps=grid, values=out, step=step, name=name)


_NAB_TIME = "%Y-%m-%d %H:%M:%S"


def read_csv_series(path: str | Path, labels: dict[str, str] | None = None, step: int | None = None) -> Series:
    """A `timestamp,value` CSV (NAB format or Unix seconds) on a regular grid.

    Duplicate timestamps keep the last value; out-of-order rows are sorted; the step is the most
    common spacing unless given; empty values are gaps.
    """
    frame = pd.read_csv(path)
    if not {"timestamp", "value"} <= set(frame.columns):
        raise ValueError(f"{path}: expected columns timestamp,value, found {','.join(frame.columns)}")
    ts = frame["timestamp"]
    if pd.api.types.is_numeric_dtype(ts):
        seconds = ts.astype("int64").to_numpy()
    else:
        # pandas 3 parses to datetime64[us] (older versions to [ns]): pin the unit before counting seconds
        seconds = pd.to_datetime(ts, utc=True).astype("datetime64[s, UTC]").astype("int64").to_numpy()
    values = pd.to_numeric(frame["value"], errors="coerce").to_numpy(dtype=np.float64)
    order = np.argsort(seconds, kind="stable")
    seconds, values = seconds[order], values[order]
    if len(seconds) == 0:
        raise ValueError(f"{path}: no rows")
    if step is None:
        diffs = np.diff(np.unique(seconds))
        step = int(pd.Series(diffs).mode().iloc[0]) if len(diffs) else 60
    start = int(seconds[0])
    end = start + (int(seconds[-1]) - start) // step * step
    name = Path(path).stem
    return build_grid_series(labels or {}, seconds, values, start, end, step, name=name)


def write_csv_series(series: Series, path: str | Path) -> None:
    """Write `timestamp,value` rows (UTC, NAB format); gaps are written with an empty value."""
    path = Path(path)
    times = pd.to_datetime(series.timestamps, unit="s", utc=True).strftime(_NAB_TIME)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["timestamp", "value"])
        for t, v in zip(times, series.values):
            writer.writerow([t, "" if np.isnan(v) else repr(float(v))])
    tmp.replace(path)


def slug(labels: dict[str, str], limit: int = 60) -> str:
    """A readable file-name stem from label values, made unique by the label digest.

    >>> slug({"job": "api", "instance": "10.0.0.1:9090"}).startswith("10.0.0.1_9090-api-")
    True
    """
    words = [re.sub(r"[^A-Za-z0-9.]+", "_", v).strip("_") for _, v in sorted(labels.items())]
    text = "-".join(w for w in words if w)[:limit] or "series"
    return f"{text}-{labels_key(labels)[:8]}"
