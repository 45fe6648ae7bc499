"""The autoscaling benchmark replays the demo's QPS and counts crossings of the ahead series."""

from __future__ import annotations

import numpy as np

from smartmetrics.benchmarks.autoscale import Tally, compare


def test_the_autoscale_benchmark_counts_earlier_crossings(capsys) -> None:
    from smartmetrics.benchmarks.autoscale import main

    assert main(["--days", "2"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()
            if line.strip().startswith(("yhat_ahead", "upper_ahead"))}
    assert set(rows) == {"yhat_ahead", "upper_ahead"}
    assert int(rows["yhat_ahead"][1]) > 0 and float(rows["upper_ahead"][2]) > float(rows["yhat_ahead"][2]) > 0


def test_a_forecast_that_leads_by_ten_minutes_is_counted_so() -> None:
    t = np.arange(0, 6 * 3600, 300)
    actual = np.where((t % 7200) >= 3600, 10.0, 1.0)  # steps up every two hours
    early = np.where(((t + 600) % 7200) >= 3600, 10.0, 1.0)  # the same, ten minutes sooner
    tally = Tally([])
    compare(t, actual, early, capacity=6.0, ahead=900, tally=tally)
    assert tally.leads == [10.0, 10.0, 10.0] and tally.actual == 3 and tally.needless == 0
    wrong = Tally([])
    compare(t, np.ones(len(t)), early, capacity=6.0, ahead=900, tally=wrong)
    assert wrong.ahead == 3 and wrong.needless == 3 == wrong.wasted and wrong.leads == []
