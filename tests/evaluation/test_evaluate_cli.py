"""`smartmetrics backtest` and `smartmetrics evaluate` end to end on small files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmetrics.app.cli import main
from smartmetrics.evaluation.evaluate import load_nab, nab_rows

HEADER = "timestamp,value,yhat,yhat_lower,yhat_upper,anomaly_score,firing,alert,alerts"


def write_nab_csv(path: Path, days: int, step: int, seed: int, spike_at: int | None = None) -> pd.DatetimeIndex:
    rng = np.random.default_rng(seed)
    index = pd.date_range("2024-03-04", periods=days * 86400 // step, freq=f"{step}s")
    hours = np.asarray(index.hour + index.minute / 60, dtype=float)
    values = 20 + 5 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 0.5, len(index))
    if spike_at is not None:
        values[spike_at : spike_at + 4] += 40
    frame = pd.DataFrame({"timestamp": index.strftime("%Y-%m-%d %H:%M:%S"), "value": values.round(3)})
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return index


def test_backtest_writes_exact_header_and_one_row_per_point(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    write_nab_csv(src, days=3, step=300, seed=1, spike_at=700)
    raw = pd.read_csv(src)
    shuffled = pd.concat([raw.iloc[:10], raw.iloc[[5]], raw.iloc[10:]]).iloc[::-1]  # duplicate, reversed
    shuffled.to_csv(src, index=False)
    out = tmp_path / "out.csv"
    assert main(["backtest", str(src), "--out", str(out), "--for", "2"]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == HEADER
    assert len(lines) - 1 == len(raw)  # one row per grid point, duplicate dropped
    frame = pd.read_csv(out)
    assert frame["timestamp"].iloc[0] == "2024-03-04 00:00:00"
    first_day = frame.iloc[:288]
    assert first_day["yhat"].isna().all() and first_day[["firing", "alert"]].eq(0).all().all()
    assert frame["yhat"].iloc[288:].notna().all()
    assert frame["alert"].iloc[700:705].sum() == 1  # the spike on day 2 is one alert


def test_backtest_rejects_bad_duration(tmp_path: Path, capsys) -> None:
    src = tmp_path / "in.csv"
    write_nab_csv(src, days=1, step=3600, seed=0)
    assert main(["backtest", str(src), "--out", str(tmp_path / "o.csv"), "--history", "2x"]) == 2
    assert "invalid duration" in capsys.readouterr().err


@pytest.fixture
def nab_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "nab"
    index = write_nab_csv(folder / "data" / "realX" / "spiky.csv", days=4, step=1800, seed=2, spike_at=150)
    write_nab_csv(folder / "data" / "artificialNoAnomaly" / "calm.csv", days=4, step=1800, seed=3)
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    windows = {
        "realX/spiky.csv": [[index[140].strftime(fmt), index[160].strftime(fmt)]],
        "artificialNoAnomaly/calm.csv": [],
    }
    (folder / "combined_windows.json").write_text(json.dumps(windows))
    return folder


def test_load_nab_maps_windows_to_rows(nab_folder: Path) -> None:
    cases = {c.name: c for c in load_nab(nab_folder)}
    assert set(cases) == {"realX/spiky.csv", "artificialNoAnomaly/calm.csv"}
    assert nab_rows(cases["realX/spiky.csv"]) == [(140, 160)]
    assert cases["artificialNoAnomaly/calm.csv"].events == ()


def test_evaluate_runs_every_detector_and_prints_the_table(nab_folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = main(["evaluate", "--nab", str(nab_folder), "--workers", "2", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    for name in ("smartmetrics", "prophet-bands", "prophet-bands-99", "grafana-adaptive", "static-3sigma"):
        assert name in text
        assert (out / "nab" / name / "realX__spiky.csv").read_text().splitlines()[0] == HEADER
    for head in ("NAB std", "low FP", "low FN", "event F1", "FA/series-day", "coverage (nominal)", "width/IQR"):
        assert head in text
    assert "2 series (1 clean), 1 labelled events" in text


def test_evaluate_usage_errors(nab_folder: Path, capsys) -> None:
    assert main(["evaluate"]) == 2
    assert main(["evaluate", "--nab", str(nab_folder), "--peers", "nope"]) == 2
    assert "unknown peer nope" in capsys.readouterr().err


def test_evaluate_min_history_sets_when_a_series_gets_its_first_band(nab_folder: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--nab", str(nab_folder), "--min-history", "2x"])
    assert info.value.code == 2 and "--min-history" in capsys.readouterr().err
    first = {}
    for text in ("1d", "8h", "1h"):  # at 30-minute steps a fit needs 6h (12 points) for any band
        out = tmp_path / text
        assert main(["evaluate", "--nab", str(nab_folder), "--peers", "static-3sigma", "--min-history", text,
                     "--out", str(out)]) == 0
        frame = pd.read_csv(out / "nab" / "smartmetrics" / "realX__spiky.csv")
        first[text] = pd.Timestamp(frame["timestamp"][frame["yhat"].notna()].iloc[0]) - pd.Timestamp(frame["timestamp"][0])
    assert first == {"1d": pd.Timedelta("1d"), "8h": pd.Timedelta("8h"), "1h": pd.Timedelta("6h")}


def test_recall_by_kind_counts_each_event_under_its_kind() -> None:
    from smartmetrics.engine.series import Series
    from smartmetrics.evaluation.evaluate import Case, Run
    from smartmetrics.evaluation.leaderboard import recall_by_kind

    t = np.arange(20) * 60
    series = Series({}, t, np.zeros(20), 60)
    case = Case("x", series, ((120, 240), (600, 660), (900, 960)), ("spike", "spike", "flatline"))
    alert = np.zeros(20, dtype=np.int8)
    alert[3] = 1  # inside the first spike only
    run = Run(pd.DataFrame({"timestamp": t, "alert": alert}), for_points=1)
    assert recall_by_kind([(case, run, [])]) == {"spike": (1, 2), "flatline": (0, 1)}


def test_evaluate_synthetic_prints_recall_by_kind(capsys) -> None:
    assert main(["evaluate", "--synthetic", "9", "--peers", "", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "event recall by anomaly kind" in out


def test_evaluate_real_corpora_with_families_and_unlabelled_coverage(nab_folder: Path, tmp_path: Path, capsys) -> None:
    (nab_folder / "meta.json").write_text(json.dumps({"realX/spiky.csv": {"kind": "cpu", "step": 30}}))
    code = main(["evaluate", "--real", str(nab_folder), "--peers", "static-3sigma", "--workers", "1"])
    text = "".join(capsys.readouterr().out.split())  # rich wraps long titles anywhere
    assert code == 0
    assert f"realcorpusnab({nab_folder})" in text and "percurvefamily" in text
    assert "cpu" in text and "artificialNoAnomaly" in text  # the kind from meta.json, else the folder
    assert main(["evaluate", "--real", str(tmp_path / "missing")]) == 2
    assert "no combined_windows.json" in capsys.readouterr().err


def test_false_alerts_and_coverage_count_every_series_outside_its_events() -> None:
    from smartmetrics.engine.series import Series
    from smartmetrics.evaluation.evaluate import Case, Run
    from smartmetrics.evaluation.leaderboard import summarise

    t = np.arange(0, 2 * 86400, 3600)
    values = np.zeros(len(t))
    values[[5, 30]] = 10.0  # outside the band twice: once inside the labelled event, once not
    frame = pd.DataFrame({"timestamp": t, "value": values, "yhat_lower": -1.0, "yhat_upper": 1.0,
                          "alert": (values > 1).astype(int)})
    case = Case("x", Series({}, t, values, 3600), ((t[4], t[6]),))
    s = summarise("d", 0.99, [(case, Run(frame, for_points=1), [])], nab=False)
    assert s.false_alerts == 1 and s.false_per_day() == pytest.approx(0.5)
    assert s.judged == len(t) - 3 and s.coverage() == pytest.approx((len(t) - 4) / (len(t) - 3))
    assert math.isnan(s.alerts_per_day())  # no clean series
