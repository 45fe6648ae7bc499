"""PNG pictures of a series with its band: what the Grafana baseline panel shows, without Grafana.

Input is the backtest table (`timestamp,value,yhat,yhat_lower,yhat_upper,...,firing,alert`), the
one shape every path produces: `smartmetrics backtest`, the demo's replays, or a live series joined
with its stored forecast.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import EngFormatter, PercentFormatter, ScalarFormatter  # noqa: E402

from smartmetrics.adapters.store import write_atomic
from smartmetrics.engine.series import Series  # noqa: E402
from smartmetrics.engine.state import SeriesBand  # noqa: E402
from smartmetrics.render.units import Unit  # noqa: E402

BAND_COLOUR, LINE_COLOUR, ALERT_COLOUR = "#7eb26d", "#1f2937", "#e02f44"


def _spans(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of each run of True.

    >>> _spans(np.array([0, 1, 1, 0, 1], dtype=bool))
    [(1, 2), (4, 4)]
    """
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), (np.flatnonzero(edges == -1) - 1).tolist()))


MIN_RELATIVE_SPAN = 0.02
"""The y axis spans at least this share of the series' level: a near-constant series (0.92985 to
0.93015) drawn on an axis of its own 0.0003 makes a band of 0.0002 look like a wide range."""


def save_figure(fig: Figure, path: str | Path, dpi: float | None = None) -> Path:
    """Write a figure as PNG atomically (temp file, then rename), creating the folder; close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return write_atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=dpi), f".{path.name}.", ".tmp")
    finally:
        plt.close(fig)


def render_png(fig: Figure, dpi: float | None = None) -> bytes:
    """A figure as PNG bytes (for a notebook's output, headless or not); the figure stays open."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def plot_band(frame: pd.DataFrame, path: str | Path, *, title: str = "", last: float | None = None,
              unit: Unit | None = None) -> Path:
    """Draw value, yhat, the band as a filled area and alert periods shaded; write a PNG."""
    return save_figure(render_band_figure(frame, title=title, last=last, unit=unit), path)


def render_band_figure(frame: pd.DataFrame, *, title: str = "", last: float | None = None,
                       unit: Unit | None = None) -> Figure:
    """The band picture of a backtest table: only what the table has is drawn, and only what is
    drawn is in the legend; `last` seconds of history back from the latest value."""
    if last is not None and len(frame):
        latest = frame.timestamp[frame.value.notna()].max() if frame.value.notna().any() else frame.timestamp.max()
        frame = frame[frame.timestamp >= latest - last]  # the last `last` of history, and the forecast after it
    frame = frame.reset_index(drop=True)
    when = pd.to_datetime(frame.timestamp, unit="s", utc=True)
    fig, ax = plt.subplots(figsize=(12, 4), dpi=110)
    banded = frame.yhat_lower.notna() & frame.yhat_upper.notna()
    if banded.any():
        ax.fill_between(when, frame.yhat_lower, frame.yhat_upper, color=BAND_COLOUR, alpha=0.3, linewidth=0,
                        label="band (yhat_lower .. yhat_upper)")
    if frame.yhat.notna().any():
        ax.plot(when, frame.yhat, color=BAND_COLOUR, linewidth=1, linestyle="--", label="yhat")
    ax.plot(when, frame.value, color=LINE_COLOUR, linewidth=0.9, label="value")
    _draw_alerts(ax, frame, when)
    if banded.any() and frame.value[: int(np.argmax(banded.to_numpy()))].notna().any():
        first = when[int(np.argmax(banded.to_numpy()))].strftime("%a %d %H:%M UTC")
        ax.text(0.995, 0.98, f"band from {first} on", transform=ax.transAxes, ha="right", va="top",
                fontsize=8, color="#6b7280")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%a %d %H:%M", tz="UTC"))
    _scale_y(ax, frame, unit)
    ax.set_title(title, loc="left", fontsize=10)
    ax.set_xlabel("UTC")
    ax.grid(alpha=0.25)
    ax.legend(loc="upper left", fontsize=8, ncols=5, frameon=False)
    fig.tight_layout()
    return fig


def _draw_alerts(ax: Axes, frame: pd.DataFrame, when: pd.Series) -> None:
    """Shade each firing period (a one-point period one step wide, so it shows) and mark onsets."""
    firing = frame["firing"].fillna(0).to_numpy(dtype=bool) if "firing" in frame else np.zeros(len(frame), bool)
    step = pd.Timedelta(seconds=float(np.median(np.diff(frame.timestamp)))) if len(frame) > 1 else pd.Timedelta(0)
    for i, (a, b) in enumerate(_spans(firing)):
        ax.axvspan(when.iloc[a], when.iloc[b] + step, color=ALERT_COLOUR, alpha=0.15, linewidth=0,
                   label="alert firing" if i == 0 else None)
    onsets = frame["alert"].fillna(0).to_numpy(dtype=bool) if "alert" in frame else np.zeros(len(frame), bool)
    if onsets.any():
        ax.scatter(when[onsets], frame.value[onsets], color=ALERT_COLOUR, zorder=3, s=18, label="alert starts")


def _scale_y(ax: Axes, frame: pd.DataFrame, unit: Unit | None) -> None:
    """Tick labels in the series' unit (plain numbers, never an offset) and an axis at least
    `MIN_RELATIVE_SPAN` of the level high."""
    drawn = frame[["value", "yhat_lower", "yhat_upper"]].to_numpy(dtype=np.float64)
    drawn = drawn[np.isfinite(drawn)]
    if len(drawn):
        level = float(np.median(np.abs(frame.value.dropna()))) if frame.value.notna().any() else 0.0
        lo, hi = ax.get_ylim()
        if hi - lo < MIN_RELATIVE_SPAN * level:
            middle = (float(drawn.min()) + float(drawn.max())) / 2
            ax.set_ylim(middle - MIN_RELATIVE_SPAN * level / 2, middle + MIN_RELATIVE_SPAN * level / 2)
    if unit is None or unit.kind == "plain":
        ax.yaxis.set_major_formatter(ScalarFormatter(useOffset=False))
    elif unit.kind in ("fraction", "percent"):
        top = float(drawn.max()) if len(drawn) else 1.0
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0 if unit.kind == "fraction" and top <= 1.0 else 100.0))
    else:
        ax.yaxis.set_major_formatter(EngFormatter(unit=unit.symbol, sep=" "))
    if unit is not None:
        ax.set_ylabel(unit.label)


def render_live_frame(series: Series, band: SeriesBand | None) -> pd.DataFrame:
    """A series' history followed by its stored forecast table, in the backtest table's columns.

    Where the table covers the history (from the last fit on), the band is interpolated at the
    history's own timestamps, as the exporter serves it, so a table on another grid still draws;
    `firing` marks the points outside it (the caller may replace it with the alert rules')."""
    past = pd.DataFrame({"timestamp": series.timestamps, "value": series.values})
    if band is None:
        return past.assign(yhat=np.nan, yhat_lower=np.nan, yhat_upper=np.nan, firing=0, alert=0)
    grid = band.start + band.step * np.arange(len(band.yhat), dtype=np.int64)
    covered = (past.timestamp >= band.start) & (past.timestamp <= band.end)
    for column, table in (("yhat", band.yhat), ("yhat_lower", band.lower), ("yhat_upper", band.upper)):
        past[column] = np.where(covered, np.interp(past.timestamp, grid, table), np.nan)
    ahead = grid > (past.timestamp.max() if len(past) else -np.inf)
    future = pd.DataFrame({"timestamp": grid[ahead], "value": np.nan, "yhat": band.yhat[ahead],
                           "yhat_lower": band.lower[ahead], "yhat_upper": band.upper[ahead]})
    frame = pd.concat([past, future], ignore_index=True) if len(future) else past
    outside = (frame.value > frame.yhat_upper) | (frame.value < frame.yhat_lower)
    return frame.assign(firing=outside.astype(int), alert=0)
