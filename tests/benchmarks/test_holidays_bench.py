"""The holiday benchmark replays with and without the calendar and checks every replayed day had a band."""

from __future__ import annotations


def test_the_holiday_benchmark_replays_with_and_without_the_calendar(capsys) -> None:
    from smartmetrics.benchmarks.holidays import main

    assert main(["--series", "2"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip().startswith(("with", "without"))}
    assert set(rows) == {"with", "without"}
    assert int(rows["with"][2]) == 0  # with the holidays given, no alert starts on one
