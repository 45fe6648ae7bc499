"""The fit-speed benchmark prints a rate only when every fit gave a finite band."""

from __future__ import annotations

import pytest

from smartmetrics.benchmarks import forecast_speed


def test_the_rate_is_printed_for_fits_that_all_gave_a_band(capsys) -> None:
    forecast_speed.main(["--series", "8", "--prophet-series", "0", "--workers", "1"])
    out = capsys.readouterr().out
    assert "synthetic series" in out and "series/s" in out


def test_a_fit_without_a_band_fails_the_run_with_no_figure(monkeypatch, capsys) -> None:
    def one_without_a_band(fit, corpus, workers):
        return 99.0, [True] * (len(corpus) - 1) + [False]

    monkeypatch.setattr(forecast_speed, "series_per_second", one_without_a_band)
    with pytest.raises(SystemExit, match=r"1 of \d+ fits gave no finite band"):
        forecast_speed.main(["--series", "8", "--prophet-series", "0", "--workers", "1"])
    assert "series/s" not in capsys.readouterr().out
