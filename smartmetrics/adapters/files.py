"""Local files in and out: a series as CSV (`timestamp,value`, NAB's layout too) and release times
from a text file. What `fetch` writes, `classify --csv`, `backtest --csv`, `evaluate` and
`--releases` read.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from smartmetrics.engine.durations import format_duration
from smartmetrics.engine.series import Series, build_grid_series

_NAB_TIME = "%Y-%m-%d %H:%M:%S"


class CsvError(ValueError):
    """A CSV series that cannot be read; the message names the file and, where it can, the line."""


@dataclass(frozen=True)
class CsvReading:
    """A CSV series and what the reader had to repair in it (counts of rows), for the user to hear of."""

    series: Series
    rows: int
    unsorted: int = 0  # rows earlier than a row above them: sorted into time order
    duplicates: int = 0  # rows whose timestamp a later row repeats: dropped, the last one kept
    non_numeric: int = 0  # values that are not numbers (empty cells are gaps and not counted): read as gaps
    off_grid: int = 0  # rows between two points of the grid (the most common spacing): dropped
    examples: dict[str, str] = field(default_factory=dict)  # per repair, where it happened first

    def notes(self) -> list[str]:
        """One sentence per repair, with counts; empty for a clean file."""
        notes = []
        if self.unsorted:
            notes.append(f"{self.unsorted} of {_rows(self.rows)} were out of time order: sorted by timestamp")
        if self.duplicates:
            notes.append(f"{_count(self.duplicates, 'duplicate timestamp')} ({self.examples['duplicates']}): "
                         "kept the last row of each, dropped the others")
        if self.non_numeric:
            verb = "value is" if self.non_numeric == 1 else "values are"
            notes.append(f"{self.non_numeric} {verb} not a number ({self.examples['non_numeric']}): read as gaps")
        if self.off_grid:
            verb = "row is" if self.off_grid == 1 else "rows are"
            notes.append(f"{self.off_grid} {verb} off the {format_duration(self.series.step)} grid "
                         f"({self.examples['off_grid']}): dropped")
        return notes


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _rows(n: int) -> str:
    return _count(n, "row")


def parse_timestamps(column: pd.Series, path: str | Path = "") -> np.ndarray:
    """Unix seconds (int64) from a CSV's timestamp column: Unix seconds, or date strings (UTC unless they
    carry an offset), as `fetch` and `backtest` write them. A `CsvError` names the first unreadable line.

    >>> parse_timestamps(pd.Series(["1970-01-02 00:00:00"])).tolist(), parse_timestamps(pd.Series([60])).tolist()
    ([86400], [60])
    """
    if pd.api.types.is_numeric_dtype(column) and column.notna().all():
        return column.astype("int64").to_numpy()
    numbers = pd.to_numeric(column, errors="coerce")
    if numbers.notna().all():
        return numbers.astype("int64").to_numpy()
    # pandas 3 parses to datetime64[us] (older versions to [ns]): pin the unit before counting seconds
    when = pd.to_datetime(column.astype("string"), utc=True, errors="coerce", format="mixed")
    bad = when.isna().to_numpy()
    if bad.any():
        first = int(np.argmax(bad))
        raise CsvError(f"{path}: line {first + 2}: timestamp {column.iloc[first]!r} is neither Unix seconds nor "
                       "a date and time (e.g. 2024-06-01 14:30:00, UTC)")
    return when.astype("datetime64[s, UTC]").astype("int64").to_numpy()


def read_csv(path: str | Path, labels: dict[str, str] | None = None, step: int | None = None) -> CsvReading:
    """A `timestamp,value` CSV (NAB format or Unix seconds) on a regular grid, with what was repaired.

    Out-of-order rows are sorted; duplicate timestamps keep the last value; values that are not numbers
    become gaps, as empty values are; the step is the most common spacing unless given. A file without
    those columns, rows, readable timestamps or any number raises `CsvError`.
    """
    try:
        frame = pd.read_csv(path, dtype={"value": "string"})
    except pd.errors.EmptyDataError:
        raise CsvError(f"{path}: the file is empty; expected a header timestamp,value and rows") from None
    except pd.errors.ParserError as exc:
        raise CsvError(f"{path}: not a readable CSV: {exc}") from None
    if not {"timestamp", "value"} <= set(frame.columns):
        raise CsvError(f"{path}: expected columns timestamp,value, found {','.join(map(str, frame.columns))}")
    if len(frame) == 0:
        raise CsvError(f"{path}: no rows")
    seconds = parse_timestamps(frame["timestamp"], path)
    text = frame["value"]
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    non_numeric = (text.notna() & (text.str.strip() != "")).to_numpy(dtype=bool) & np.isnan(values)
    non_numeric &= ~text.str.strip().str.lower().isin(["nan"]).to_numpy(dtype=bool)
    if not np.isfinite(values).any():
        raise CsvError(f"{path}: no numeric value in column value")
    order = np.argsort(seconds, kind="stable")
    unsorted = int((seconds < np.maximum.accumulate(seconds)).sum())
    seconds, values = seconds[order], values[order]
    repeated = np.r_[seconds[1:] == seconds[:-1], False]  # each row a later row repeats
    examples = {}
    if repeated.any():
        examples["duplicates"] = ", ".join(
            pd.to_datetime(np.unique(seconds[repeated])[:3], unit="s").strftime(_NAB_TIME))
    if non_numeric.any():
        lines = np.flatnonzero(non_numeric)[:3]
        examples["non_numeric"] = ", ".join(f"line {i + 2}: {text.iloc[i]!r}" for i in lines)
    if step is None:
        diffs = np.diff(np.unique(seconds))
        step = int(pd.Series(diffs).mode().iloc[0]) if len(diffs) else 60
    start = int(seconds[0])
    end = start + (int(seconds[-1]) - start) // step * step
    off_grid = (seconds - start) % step != 0
    if off_grid.any():
        lines = np.sort(order[off_grid])[:3]
        examples["off_grid"] = ", ".join(f"line {i + 2}" for i in lines)
    series = build_grid_series(labels or {}, seconds, values, start, end, step, name=Path(path).stem)
    return CsvReading(series, len(frame), unsorted, int(repeated.sum()), int(non_numeric.sum()),
                      int(off_grid.sum()), examples)


def read_csv_series(path: str | Path, labels: dict[str, str] | None = None, step: int | None = None) -> Series:
    """The series of `read_csv`, repairs done without a word (evaluation corpora, classification)."""
    return read_csv(path, labels, step).series


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
