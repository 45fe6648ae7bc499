"""The remote-write encode benchmark runs, and its hand-written encoder agrees byte for byte."""

from __future__ import annotations

import pytest

from smartmetrics.benchmarks.remote_write import main


def test_the_benchmark_runs_and_both_encoders_give_the_same_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--series", "40", "--batch-size", "7", "--repeat", "1"])  # asserts the bodies agree
    assert "120 samples in 18 requests" in capsys.readouterr().out
