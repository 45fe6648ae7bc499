"""The Dask benchmark runs end to end on a real cluster and checks its own result."""

from __future__ import annotations

import pytest

pytest.importorskip("distributed")


@pytest.mark.slow
def test_the_dask_benchmark_fits_everything_on_both_and_compares_the_bands(capsys) -> None:
    from smartmetrics.benchmarks.dask_fit import main

    assert main(["--series", "16", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "ratio dask / local:" in out
    assert "bands identical on all" in out and ": yes" in out
