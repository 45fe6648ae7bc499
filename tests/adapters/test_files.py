"""Local CSV series: what the reader repairs is counted, what it cannot read is refused by line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from smartmetrics.adapters.files import CsvError, read_csv, read_csv_series

MESSY = """timestamp,value
2024-06-01 00:10:00,3
2024-06-01 00:00:00,1
2024-06-01 00:05:00,2
2024-06-01 00:05:00,2.5
2024-06-01 00:15:00,abc
2024-06-01 00:20:00,
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.csv"
    path.write_text(text)
    return path


def test_repairs_are_counted_and_described(tmp_path: Path) -> None:
    reading = read_csv(write(tmp_path, MESSY))
    assert (reading.rows, reading.unsorted, reading.duplicates, reading.non_numeric) == (6, 3, 1, 1)
    assert reading.series.values[:3].tolist() == [1.0, 2.5, 3.0]
    assert np.isnan(reading.series.values[3]) and np.isnan(reading.series.values[4])
    notes = reading.notes()
    assert any("3 of 6 rows were out of time order" in n for n in notes), notes
    assert any("1 duplicate timestamp" in n and "2024-06-01 00:05:00" in n and "last" in n for n in notes), notes
    assert any("1 value is not a number" in n and "line 6" in n and "'abc'" in n for n in notes), notes
    assert not any("empty" in n for n in notes), notes  # an empty value is a gap, as `fetch` writes them


def test_rows_off_the_grid_are_counted(tmp_path: Path) -> None:
    reading = read_csv(write(tmp_path, "timestamp,value\n0,1\n60,2\n90,9\n120,3\n180,4\n240,5\n300,6\n"))
    assert reading.off_grid == 1 and reading.series.step == 60
    assert any("1 row is off the 1m grid" in n and "line 4" in n for n in reading.notes()), reading.notes()


def test_a_clean_file_has_no_notes(tmp_path: Path) -> None:
    reading = read_csv(write(tmp_path, "timestamp,value\n0,1\n60,2\n120,3\n"))
    assert reading.notes() == [] and reading.series.step == 60


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("timestamp,value\n2024-06-01 00:00:00,1\nyesterday,2\n", "line 3: timestamp 'yesterday' is neither"),
        ("time,value\n0,1\n", "expected columns timestamp,value"),
        ("timestamp,value\n", "no rows"),
        ("timestamp,value\n0,a\n60,b\n", "no numeric value"),
        ("", "empty"),
    ],
)
def test_what_cannot_be_read_is_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CsvError, match=message):
        read_csv(write(tmp_path, text))


def test_read_csv_series_is_the_reading_s_series(tmp_path: Path) -> None:
    path = write(tmp_path, MESSY)
    assert read_csv_series(path).values.tolist()[:3] == [1.0, 2.5, 3.0]
