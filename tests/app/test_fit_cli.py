"""`smartmetrics fit`: a baseline whose expr matches nothing is named, and fitting nothing at all fails."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from smartmetrics.app import fit, workers
from smartmetrics.app.cli import main
from smartmetrics.app.retrain import RetrainOutcome
from smartmetrics.engine.state import BaselineState


class NoPool:
    def close(self) -> None:
        pass


def fake_retrain(fitted: dict[str, int]):
    def retrain(config, alias, previous, pool, now, **kwargs) -> RetrainOutcome:
        n = fitted[alias]
        return RetrainOutcome(alias, state=BaselineState(alias, now, ()), fetched=n, fitted=n,
                              kinds=Counter({("seasonal", "mstl"): n}) if n else Counter(),
                              coverage=[0.999] * n, nominal=0.9995 if n else None)
    return retrain


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text("sources: {prom: {url: 'http://127.0.0.1:9'}}\n"
                    f"store: {{path: '{tmp_path / 'models'}'}}\n"
                    "baselines:\n  qps: {expr: 'rate(x[5m])'}\n  typo: {expr: 'rate(x_typo[5m])'}\n")
    return path


@pytest.mark.parametrize(("fitted", "code"), [({"qps": 2, "typo": 0}, 0), ({"qps": 0, "typo": 0}, 1)])
def test_a_baseline_matching_no_series_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str], fitted: dict, code: int) -> None:
    monkeypatch.setattr(workers, "open_pool", lambda *a, **k: NoPool())
    monkeypatch.setattr(fit, "retrain_baseline", fake_retrain(fitted))
    assert main(["fit", "--config", str(write_config(tmp_path))]) == code
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "warning: baseline typo: its expr matched no series" in " ".join(text.split()), text
    assert "rate(x_typo[5m])" in text
    assert "nan" not in captured.out
    if code:
        assert "error: nothing was fitted" in " ".join(captured.err.split()), captured.err
