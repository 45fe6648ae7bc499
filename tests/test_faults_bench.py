"""The fault benchmark runs, checks itself and passes (`make bench-faults` runs it with more trials)."""

from __future__ import annotations

import pytest

from smartmetrics.benchmarks import faults

pytestmark = pytest.mark.slow


def test_every_fault_row_survives(prometheus_binaries: tuple[str, str], capsys: pytest.CaptureFixture) -> None:
    assert faults.main(["--kills", "2", "--stops", "2", "--outages", "1", "--fuzz", "300", "--load-series", "2000", "--idle", "50",
                        "--load-requests", "300"]) == 0
    out = capsys.readouterr().out
    for fault in ("SIGKILL mid-retrain", "SIGTERM mid-retrain", "Prometheus down", "unusable store file", "unusable source answer",
                  "requests built to hurt", "load: 2,000 series"):
        assert fault in out
