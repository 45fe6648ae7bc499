"""The retrain benchmark runs end to end and checks itself (`make bench-retrain` runs 1,000 and 10,000
series); a retrain that stores fewer series than it was given makes it fail, not print a figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from smartmetrics.benchmarks import retrain

pytestmark = pytest.mark.slow


def test_small_run_prints_its_figures(prometheus_binaries: tuple[str, str], capsys: pytest.CaptureFixture) -> None:
    assert retrain.main(["--sizes", "40", "--days", "3", "--prophet-series", "1"]) == 0
    out = capsys.readouterr().out
    assert "every series fitted and stored" in out and "x Prophet" in out


def test_a_store_short_of_series_fails_the_benchmark(prometheus_binaries: tuple[str, str], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    real = retrain.run_fit

    def losing_one(config: Path, store: Path) -> retrain.FitRun:
        run = real(config, store)
        run.stored -= 1
        return run

    monkeypatch.setattr(retrain, "run_fit", losing_one)
    assert retrain.main(["--sizes", "20", "--days", "2", "--prophet-series", "1"]) == 1
    assert "the store holds 19 series" in capsys.readouterr().out


def test_a_daily_retrain_that_classified_again_fails_the_benchmark(prometheus_binaries: tuple[str, str],
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture) -> None:
    real = retrain.run_fit

    def cold(config: Path, store: Path) -> retrain.FitRun:
        run = real(config, store)
        run.kept = 0  # as if the second fit had not kept what the first one found
        return run

    monkeypatch.setattr(retrain, "run_fit", cold)
    assert retrain.main(["--sizes", "20", "--days", "2", "--prophet-series", "1"]) == 1
    out = capsys.readouterr().out
    assert "the daily retrain kept the classification of 0 series, of " in out, out


def test_mixed_series_hold_every_kind() -> None:
    series = retrain.mixed_series(8, 86400 * 30, 2)
    assert [s.labels["kind"] for s in series[:4]] == list(retrain.KINDS)
    assert all(np.isfinite(s.values).all() for s in series)
    assert (series[3].values == 0).mean() > 0.9  # sparse
