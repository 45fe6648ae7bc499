"""`Series`: one time series on a regular grid, gaps as NaN; pure helpers to build and label it (CSV
files are `smartmetrics.adapters.files`).

Timestamps are Unix seconds (int64, UTC) spaced exactly `step` apart; values are float64 with NaN
where Prometheus returned nothing, NaN or ±Inf. Every later stage (classify, models, bands) takes
this shape and never has to think about irregular samples.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
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
        import pandas as pd  # not at the top: serving stored bands needs no pandas (a faster start-up)

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


_COMPACT = json.JSONEncoder(separators=(",", ":"))
"""`json.dumps(..., separators=(",", ":"))` without building an encoder per call (a quarter of
`labels_key`'s time, which runs once per series at every start-up)."""


def labels_key(labels: dict[str, str]) -> str:
    """A 16-hex-digit digest of a label set, independent of key order.

    >>> labels_key({"b": "2", "a": "1"}) == labels_key({"a": "1", "b": "2"})
    True
    >>> labels_key({"job": "api", "instance": "a:9090"}), labels_key({"é": 'x"y'})  # stored, and shards hash it
    ('fec0361fda01b18d', 'abed0f4c60cf8385')
    """
    text = _COMPACT.encode(sorted(labels.items()))
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
    place_on_grid(out, times, values, start, step)
    return Series(labels=dict(labels), timestamps=grid, values=out, step=step, name=name)


def place_on_grid(out: np.ndarray, times: np.ndarray, values: np.ndarray, start: int, step: int) -> None:
    """Write (time, value) samples into `out`, the grid `start + i * step`: samples off the grid or
    outside it are dropped, duplicates keep the last one, NaN and ±Inf become NaN.

    >>> out = np.full(3, np.nan)
    >>> place_on_grid(out, np.array([0, 60, 61, 120, 180]), np.array([1.0, np.inf, 5.0, 3.0, 4.0]), 0, 60)
    >>> out.tolist()
    [1.0, nan, 3.0]
    """
    offset = (np.asarray(times, dtype=np.float64) - start) / step
    idx = np.rint(offset).astype(np.int64)
    ok = (np.abs(offset - idx) < 1e-6) & (idx >= 0) & (idx < len(out))
    vals = np.asarray(values, dtype=np.float64)[ok]
    out[idx[ok]] = np.where(np.isfinite(vals), vals, np.nan)


def slug(labels: dict[str, str], limit: int = 60) -> str:
    """A readable file-name stem from label values, made unique by the label digest.

    >>> slug({"job": "api", "instance": "10.0.0.1:9090"}).startswith("10.0.0.1_9090-api-")
    True
    """
    words = [re.sub(r"[^A-Za-z0-9.]+", "_", v).strip("_") for _, v in sorted(labels.items())]
    text = "-".join(w for w in words if w)[:limit] or "series"
    return f"{text}-{labels_key(labels)[:8]}"
