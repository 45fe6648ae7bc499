"""The command line as a user meets it: help, version, exit codes, readable errors."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from smartmetrics import __version__
from smartmetrics.app.cli import build_parser, main

ROOT = Path(__file__).parents[2]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"smartmetrics {__version__}"


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "commands:" in capsys.readouterr().out


def test_check_config_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(ROOT / "configs" / "example.yaml")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# ") and "valid (2 sources, 3 baselines)" in out
    assert "history: 14d" in out


def test_check_config_bad_exits_2_listing_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("sources: {prom: {url: 'http://p'}}\nbaselines:\n  qps: {expr: up, step: 5x}\n")
    with pytest.raises(SystemExit) as info:
        main(["check-config", str(path)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"error: {path}: invalid configuration" in err
    assert 'baselines.qps.step: invalid duration "5x"' in err


def test_unknown_baseline_is_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("sources: {prom: {url: 'http://127.0.0.1:9'}}\nbaselines: {qps: {expr: up}}\n")
    with pytest.raises(SystemExit) as info:
        main(["fetch", "--config", str(path), "--baseline", "nope", "--out", str(tmp_path / "o")])
    assert info.value.code == 2
    assert "unknown baseline nope (configured: qps)" in capsys.readouterr().err


def test_console_script_runs_as_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "smartmetrics", "check-config", "/nonexistent.yaml"],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 2
    assert "cannot read file" in done.stderr


def test_every_command_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = list(sub.choices)
    assert {"check-config", "fetch", "run", "fit", "demo"} <= set(commands)
    listing = subprocess.run([sys.executable, "-m", "smartmetrics", "--help"], capture_output=True, text=True).stdout
    assert all(command in listing for command in commands)
    for command in commands:
        sub = subprocess.run([sys.executable, "-m", "smartmetrics", command, "--help"], capture_output=True, text=True)
        assert sub.returncode == 0 and len(sub.stdout) > 200, command


def test_json_logs_are_one_object_per_line(tmp_path: Path) -> None:
    import json
    import signal
    import time

    from smartmetrics.app.promlocal import free_port

    config = tmp_path / "c.yaml"
    for _ in range(3):  # again on another port if the probed one was taken before the daemon bound it
        config.write_text(
            "sources: {p: {url: 'http://127.0.0.1:9', retries: 0}}\nbaselines: {qps: {expr: up}}\n"
            f"store: {{path: {tmp_path / 'models'}}}\nserver: {{listen: '127.0.0.1:{free_port()}'}}\n"
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "smartmetrics", "--log-format", "json", "run", "--config", str(config),
             "--workers", "1"],
            stderr=subprocess.PIPE, text=True,
        )
        time.sleep(4)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        if "address already in use" not in err.lower():
            break
    assert proc.returncode == 0
    records = [json.loads(line) for line in err.splitlines()]
    assert {"time", "level", "logger", "msg"} <= set(records[0])
    assert any(r["level"] == "error" and "cannot reach" in r["msg"] for r in records)


def test_check_config_names_a_promql_syntax_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("sources: {prom: {url: 'http://p'}}\n"
                    "baselines:\n  qps: {expr: 'sum by (model (rate(x[5m]))'}\n")
    with pytest.raises(SystemExit) as info:
        main(["check-config", str(path)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "baselines.qps.expr: not valid PromQL: unclosed left parenthesis at column 8" in err
    assert err.count(str(path)) == 1, err


def test_backtest_query_with_a_syntax_error_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("sources: {prom: {url: 'http://127.0.0.1:9'}}\nbaselines: {qps: {expr: up}}\n")
    with pytest.raises(SystemExit) as info:
        main(["backtest", "rate(x[5m]", "--config", str(path), "--out", str(tmp_path / "o.csv")])
    assert info.value.code == 2
    assert "error: rate(x[5m]: not valid PromQL: unclosed left parenthesis at column 5" in capsys.readouterr().err


@pytest.mark.parametrize("failure", ["os", "config"])
def test_tune_write_failure_names_the_config_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str], failure: str) -> None:
    from smartmetrics.config import ConfigError
    from smartmetrics.evaluation import tune

    path = tmp_path / "c.yaml"
    path.write_text("sources: {prom: {url: 'http://127.0.0.1:9'}}\nbaselines: {qps: {expr: up}}\n")

    def refuse(*args: object, **kwargs: object) -> int:
        if failure == "os":
            raise PermissionError(13, "Permission denied", str(path))
        raise ConfigError(str(path), ["baselines.qps.alert.for: 5 has no unit"])

    monkeypatch.setattr(tune, "run_tune", refuse)
    assert main(["tune", "--config", str(path), "--write"]) == 1
    err = capsys.readouterr().err
    assert err.count(str(path)) == 1, err
    assert ("Permission denied" if failure == "os" else "baselines.qps.alert.for: 5 has no unit") in err


@pytest.mark.parametrize("command", ["backtest", "plot", "evaluate"])
def test_a_bad_sensitivity_is_a_usage_error_listing_the_choices(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    argv = {"backtest": ["backtest", "x.csv", "--out", str(tmp_path / "o.csv")],
            "plot": ["plot", "x.csv", "--out", str(tmp_path / "o.png")],
            "evaluate": ["evaluate", "--synthetic", "1"]}[command]
    with pytest.raises(SystemExit) as info:
        main([*argv, "--sensitivity", "extreme"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--sensitivity: expected low|medium|high or a number in (0,1), got 'extreme'" in err, err
    assert "could not convert" not in err


def test_backtest_says_what_it_repaired_in_a_messy_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.adapters.test_files import MESSY

    (tmp_path / "s.csv").write_text(MESSY)
    assert main(["backtest", str(tmp_path / "s.csv"), "--out", str(tmp_path / "o.csv")]) == 0
    captured = capsys.readouterr()
    assert "warning: " in captured.err and "out of time order" in captured.err
    assert "duplicate timestamp" in captured.err and "not a number" in captured.err
    assert "wrote" in captured.out


@pytest.mark.parametrize(("text", "message"), [
    ("timestamp,value\n2024-06-01 00:00:00,1\nyesterday,2\n", "line 3: timestamp 'yesterday'"),
    (None, "No such file or directory"),
])
def test_backtest_refuses_an_unreadable_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           text: str | None, message: str) -> None:
    path = tmp_path / "s.csv"
    if text is not None:
        path.write_text(text)
    with pytest.raises(SystemExit) as info:
        main(["backtest", str(path), "--out", str(tmp_path / "o.csv")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}") and message in err and err.count(str(path)) == 1, err
    assert not (tmp_path / "o.csv").exists()


def test_backtest_with_feedback_widens_the_side_on_call_called_noise_from_the_next_retrain_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import numpy as np
    import pandas as pd

    from smartmetrics.engine.alerts import AlertRecord
    from smartmetrics.engine.series import labels_key

    t = np.arange(0, 4 * 86400, 600) + 1_704_067_200
    values = 100 + np.random.default_rng(1).normal(0, 3, len(t))
    pd.DataFrame({"timestamp": t, "value": values}).to_csv(tmp_path / "s.csv", index=False)
    given = float(t[0] + 2 * 86400 + 3600)
    labels = {"job": "api", "alertname": "SmartmetricsAnomaly", "baseline": "qps"}
    noise = AlertRecord("a1", "qps", "f", labels, labels_key({"job": "api"}), given - 600, value=140.0,
                        yhat=100.0, lower=90.0, upper=110.0, side="above", feedback="noise", feedback_at=given)
    (tmp_path / "fb.json").write_text(json.dumps([noise.to_doc()]))
    argv = ["backtest", str(tmp_path / "s.csv"), "--follow", "0"]
    assert main([*argv, "--out", str(tmp_path / "plain.csv")]) == 0
    assert main([*argv, "--feedback", str(tmp_path / "fb.json"), "--out", str(tmp_path / "fed.csv")]) == 0
    assert "feedback: 1 noise, 0 real" in capsys.readouterr().out
    plain, fed = (pd.read_csv(tmp_path / f"{n}.csv") for n in ("plain", "fed"))
    assert len(plain) == len(t)
    after = t >= t[0] + 3 * 86400  # from the first retrain after the feedback was given
    assert np.allclose(plain.yhat_upper[~after], fed.yhat_upper[~after], equal_nan=True)
    assert (fed.yhat_upper[after] - fed.yhat[after] > 1.5 * (plain.yhat_upper[after] - plain.yhat[after])).all()
    assert np.allclose(plain.yhat_lower, fed.yhat_lower, equal_nan=True)

    other = AlertRecord.from_doc({**noise.to_doc(), "id": "b2", "baseline": "lat"})
    (tmp_path / "two.json").write_text(json.dumps({"alerts": [noise.to_doc(), other.to_doc()]}))
    with pytest.raises(SystemExit) as info:
        main([*argv, "--feedback", str(tmp_path / "two.json"), "--out", str(tmp_path / "x.csv")])
    assert info.value.code == 2 and "choose one with --baseline" in capsys.readouterr().err
    assert main([*argv, "--feedback", str(tmp_path / "two.json"), "--baseline", "lat",
                 "--out", str(tmp_path / "x.csv")]) == 0


def test_log_lines_follow_stderr_after_the_stream_main_started_with_is_closed(monkeypatch) -> None:
    import io
    import logging

    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    with pytest.raises(SystemExit) as exited:
        main(["classify", "--config", "/nonexistent/smartmetrics.yaml"])
    assert exited.value.code == 2
    assert "nonexistent" in first.getvalue()
    first.close()
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("smartmetrics").warning("still heard")
    assert "WARNING smartmetrics: still heard" in second.getvalue()
    assert "Logging error" not in second.getvalue()
