"""The Dask benchmark runs end to end on a real cluster and checks its own result."""

from __future__ import annotations

import pytest

pytest.importorskip("distributed")


@pytest.mark.slow
def test_the_dask_benchmark_fits_everything_every_way_compares_the_bands_and_projects(capsys) -> None:
    from smartmetrics.benchmarks.dask_fit import main

    assert main(["--series", "16", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "ratio dask / local: " in out and "at 1 worker" in out and "at 2 workers" in out
    assert "bands identical on all" in out and "4 ways: yes" in out
    assert out.count(" workers: fits ") == 4  # the projection on 2, 8, 32 and 64 workers
