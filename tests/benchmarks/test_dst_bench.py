"""The daylight-saving benchmark replays both ways and checks every replayed day had a band."""

from __future__ import annotations


def test_the_dst_benchmark_replays_local_and_utc_fits(capsys) -> None:
    from smartmetrics.benchmarks.dst import main

    assert main(["--series", "2"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: [float(x) for x in line.split()[1:3]] for line in out.splitlines()
            if line.strip().startswith(("Europe/Berlin", "UTC"))}
    assert set(rows) == {"Europe/Berlin", "UTC"}
    assert rows["Europe/Berlin"][1] <= 0.05  # on the local clock, the switch costs nothing
