"""The band as the daemon holds it: each series' forecast table (`SeriesBand`) and every series of one
baseline (`BaselineState`), pure data shared by the engine, the store, the exporter and the renderers.
Reading and writing them is `smartmetrics.adapters.store`'s business.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smartmetrics.engine.series import labels_key

COLUMNS = ("yhat", "lower", "upper")


def json_safe(value: Any) -> Any:
    """Metadata made JSON-safe: numpy scalars to Python, NaN/±Inf to None, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


GROWING = 86400  # a band fitted on less history than this is refitted as its history doubles


def growing(history: float, data_end: float, now: float, window: float = float("inf")) -> bool:
    """Whether a band fitted on `history` seconds of a series (`training["history"]`) up to `data_end`
    is due a refit at `now` between daily retrains: fitted on less than `GROWING` (a day) and less than
    half the baseline's `window` (its `history`, which a fit can never exceed), with twice that
    history at hand now. A baseline whose `min_history` is under a day gives a series its band from its
    first hours; without the refits it would keep that band until the next daily retrain, and a
    day's rise it never saw would alert all afternoon.

    >>> growing(3600, 3600, 7199), growing(3600, 3600, 7200), growing(86400, 86400, 10 * 86400)
    (False, True, False)
    >>> growing(3 * 3600, 3 * 3600, 10 * 86400, window=6 * 3600)  # half a 6h window: grown
    False
    """
    return young_band(history, window) and now - (data_end - history) >= 2 * history


def young_band(history: float, window: float = float("inf")) -> bool:
    """Whether a band fitted on `history` seconds is still refitted as that history doubles: under
    `GROWING` and under half the baseline's `window` (the daemon's `growing`, the replay's
    `evaluation.backtest.period_starts`).

    >>> young_band(3600), young_band(86400), young_band(3 * 3600, window=6 * 3600)
    (True, False, False)
    """
    return 0 < history < min(GROWING, window / 2)


@dataclass(frozen=True)
class SeriesBand:
    """One series' forecast table: yhat and its band on the grid `start + i * step`."""

    labels: dict[str, str]
    start: int
    step: int
    yhat: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return labels_key(self.labels)

    @property
    def end(self) -> int:
        """Timestamp of the table's last point."""
        return self.start + (len(self.yhat) - 1) * self.step

    def at(self, t: float) -> tuple[float, float, float] | None:
        """(yhat, lower, upper) at time t, linearly interpolated; None outside the table or in a gap."""
        pos = (t - self.start) / self.step
        if not 0 <= pos <= len(self.yhat) - 1:
            return None
        i = min(int(pos), len(self.yhat) - 2) if len(self.yhat) > 1 else 0
        frac = pos - i
        out = []
        for arr in (self.yhat, self.lower, self.upper):
            a = arr[i] if frac == 0 or len(arr) == 1 else arr[i] + frac * (arr[i + 1] - arr[i])
            out.append(float(a))
        return None if any(np.isnan(out)) else (out[0], out[1], out[2])


@dataclass(frozen=True)
class BaselineState:
    """Every fitted series of one baseline, as last written."""

    alias: str
    fitted_at: float
    series: tuple[SeriesBand, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    tables: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)
    """The series' yhat, lower and upper as rows of three (n, width) float32 tables, NaN-padded, when they are
    held that way already (a state read from the store: its bands are views into them), so the exporter
    serves from them without a copy. Only the store passes it; a state of other bands has None."""

    def __post_init__(self) -> None:
        if self.tables is not None and (len(self.tables) != len(COLUMNS) or any(
                t.ndim != 2 or len(t) != len(self.series) or t.shape != self.tables[0].shape or t.dtype != np.float32
                for t in self.tables)):
            raise ValueError("tables must be three (series, width) float32 tables of the same shape")

    def merged(self, newer: Iterable[SeriesBand], fitted_at: float, drop: frozenset[str] = frozenset()) -> BaselineState:
        """This state with `newer` bands replacing (or adding to) those with the same labels."""
        table = {b.key: b for b in self.series if b.key not in drop}
        table.update({b.key: b for b in newer})
        return BaselineState(self.alias, fitted_at, tuple(table[k] for k in sorted(table)), self.meta)


def stack_columns(series: tuple[SeriesBand, ...], min_width: int = 0) -> np.ndarray:
    """(3, n, width) float32: yhat, lower, upper of every series, each row NaN-padded to the longest.

    float32: 7 significant digits are plenty for a band, and it halves both the archive and the
    exporter's snapshot (100k series load twice as fast).
    """
    width = max(max((len(b.yhat) for b in series), default=0), min_width)
    out = np.full((len(COLUMNS), len(series), width), np.nan, dtype=np.float32)
    for i, band in enumerate(series):
        for j, name in enumerate(COLUMNS):
            values = getattr(band, name)
            out[j, i, : len(values)] = values
    return out
