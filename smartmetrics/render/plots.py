"""PNG pictures of a series with its band: what the Grafana baseline panel shows, without Grafana.

Input is the backtest table (`timestamp,value,yhat,yhat_lower,yhat_upper,...,firing,alert`), the
one shape every path produces: `smartmetrics backtest`, the demo's replays, or a live series joined
with its stored forecast.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from smartmetrics.engine.series import Series  # noqa: E402
from smartmetrics.engine.state import SeriesBand  # noqa: E402

BAND_COLOUR, LINE_COLOUR, ALERT_COLOUR = "#7eb26d", "#1f2937", "#e02f44"


def _spans(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of each run of True.

    >>> _spans(np.array([0, 1, 1, 0, 1], dtype=bool))
    [(1, 2), (4, 4)]
    """
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), (np.flatnonzero(edges == -1) - 1).tolist()))


def plot_band(frame: pd.DataFrame, path: str | Path, *, title: str = "", last: float | None = None) -> Path:
    """Draw value, yhat, the band as a filled area and alert periods shaded; write a PNG."""
    if last is not None and len(frame):
        frame = frame[frame.timestamp >= frame.timestamp.max() - last]
    when = pd.to_datetime(frame.timestamp, unit="s", utc=True)
    fig, ax = plt.subplots(figsize=(12, 4), dpi=110)
    ax.fill_between(when, frame.yhat_lower, frame.yhat_upper, color=BAND_COLOUR, alpha=0.3, linewidth=0,
                    label="band (yhat_lower .. yhat_upper)")
    ax.plot(when, frame.yhat, color=BAND_COLOUR, linewidth=1, linestyle="--", label="yhat")
    ax.plot(when, frame.value, color=LINE_COLOUR, linewidth=0.9, label="value")
    firing = frame["firing"].to_numpy(dtype=bool) if "firing" in frame else np.zeros(len(frame), dtype=bool)
    for i, (a, b) in enumerate(_spans(firing)):
        ax.axvspan(when.iloc[a], when.iloc[b], color=ALERT_COLOUR, alpha=0.15, linewidth=0,
                   label="alert firing" if i == 0 else None)
    if "alert" in frame:
        onsets = frame.alert.to_numpy(dtype=bool)
        ax.scatter(when[onsets], frame.value[onsets], color=ALERT_COLOUR, zorder=3, s=18, label="alert starts")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%a %d %H:%M", tz="UTC"))
    ax.set_title(title, loc="left", fontsize=10)
    ax.set_xlabel("UTC")
    ax.grid(alpha=0.25)
    ax.legend(loc="upper left", fontsize=8, ncols=5, frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def render_live_frame(series: Series, band: SeriesBand | None) -> pd.DataFrame:
    """A series' history followed by its stored forecast table, in the backtest table's columns."""
    past = pd.DataFrame({"timestamp": series.timestamps, "value": series.values})
    if band is None:
        return past.assign(yhat=np.nan, yhat_lower=np.nan, yhat_upper=np.nan, firing=0, alert=0)
    ts = band.start + band.step * np.arange(len(band.yhat), dtype=np.int64)
    future = pd.DataFrame({"timestamp": ts, "yhat": band.yhat, "yhat_lower": band.lower, "yhat_upper": band.upper})
    frame = past.merge(future, on="timestamp", how="outer").sort_values("timestamp", ignore_index=True)
    outside = (frame.value > frame.yhat_upper) | (frame.value < frame.yhat_lower)
    return frame.assign(firing=outside.astype(int), alert=0)
