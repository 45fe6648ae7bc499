"""Local files in and out: a series as CSV (`timestamp,value`, NAB's layout too) and release times
from a text file. What `fetch` writes, `classify --csv`, `backtest --csv`, `evaluate` and
`--releases` read.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from smartmetrics.engine.series import Series, build_grid_series

_NAB_TIME = "%Y-%m-%d %H:%M:%S"


def parse_timestamps(column: pd.Series) -> np.ndarray:
    """Unix seconds (int64) from a CSV's timestamp column: Unix seconds, or date strings (UTC unless they
    carry an offset), as `fetch` and `backtest` write them.

    >>> parse_timestamps(pd.Series(["1970-01-02 00:00:00"])).tolist(), parse_timestamps(pd.Series([60])).tolist()
    ([86400], [60])
    """
    if pd.api.types.is_numeric_dtype(column):
        return column.astype("int64").to_numpy()
    # pandas 3 parses to datetime64[us] (older versions to [ns]): pin the unit before counting seconds
    return pd.to_datetime(column, utc=True).astype("datetime64[s, UTC]").astype("int64").to_numpy()


def read_csv_series(path: str | Path, labels: dict[str, str] | None = None, step: int | None = None) -> Series:
    """A `timestamp,value` CSV (NAB format or Unix seconds) on a regular grid.

    Duplicate timestamps keep the last value; out-of-order rows are sorted; the step is the most
    common spacing unless given; empty values are gaps.
    """
    frame = pd.read_csv(path)
    if not {"timestamp", "value"} <= set(frame.columns):
        raise ValueError(f"{path}: expected columns timestamp,value, found {','.join(frame.columns)}")
    seconds = parse_timestamps(frame["timestamp"])
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


def read_releases(path: str | Path) -> tuple[int, ...]:
    """Release times from a text file: one per line, Unix seconds or a UTC date and time
    (`2024-05-01 14:30:00`, ISO 8601 too), optionally as the first column of a CSV with a header;
    blank lines and `#` comments are skipped. `ValueError` names the line that cannot be read.
    """
    import pandas as pd

    out: list[int] = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        field = line.split("#", 1)[0].split(",", 1)[0].strip()
        if not field or (number == 1 and field.lower() in ("timestamp", "time", "release")):
            continue
        try:
            out.append(int(float(field)))
            continue
        except ValueError:
            pass
        try:
            when = pd.Timestamp(field)
            when = when.tz_localize("UTC") if when.tzinfo is None else when
            out.append(int(when.timestamp()))
        except (ValueError, TypeError):
            raise ValueError(f"{path}:{number}: {field!r} is neither Unix seconds nor a date and time") from None
    return tuple(sorted(out))
