"""One alert semantics: the replay fires exactly what the generated rules fire in a real Prometheus.

For a set of curves (seasonal, stuck, sparse, bursty, a sustained shift) the engine is replayed
walk-forward as `backtest` does (daily retrain, follow pass); the last day's values and bands, and
the stuck and mean limits the fit stored, are then fed to `promtool test rules` as input series,
with the rule file `smartmetrics rules` generates for a baseline with the same settings (annotations
left out: they do not decide when an alert fires). Prometheus evaluates the rules once per sample,
and at every evaluation of that day each alert must be firing exactly where the replay says it is.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import yaml

from smartmetrics.adapters.exporter import MEAN_LOWER_METRIC, MEAN_UPPER_METRIC, STUCK_METRIC
from smartmetrics.config import parse_config
from smartmetrics.engine.firing import AlertRules
from smartmetrics.engine.follow import AFTER
from smartmetrics.engine.series import Series, format_labels
from smartmetrics.engine.state import BaselineState, SeriesBand
from smartmetrics.evaluation.backtest import DAY, replay_alerts, slice_series, walk_forward_band
from smartmetrics.evaluation.evaluate import smartmetrics_fit
from smartmetrics.render.parts import LOWER, UPPER, YHAT
from smartmetrics.render.rules import RULES_FILE, render_rule_files
from smartmetrics.render.stuck_rules import stuck_alert_name
from smartmetrics.render.sustained_rules import sustained_alert_name

STEP = 300
DAYS = 5  # four days of history, then the replayed day
LEAD = 6 * 3600  # values fed before the replayed day: the stuck and sustained windows look back
LABELS = {"job": "app", "instance": "a"}
PER_DAY = DAY // STEP


def seasonal(rng: np.random.Generator) -> np.ndarray:
    t = np.arange(DAYS * PER_DAY) * STEP
    v = 100 + 30 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 2, len(t))
    day = (DAYS - 1) * PER_DAY
    v[day + 60:day + 64] += 80  # a spike of 20 minutes
    v[day + 150:day + 154] -= 60  # a dip that comes back for ten minutes and dips again:
    v[day + 156:day + 160] -= 60  # one alert through keep_firing_for
    return v


def stuck(rng: np.random.Generator) -> np.ndarray:
    v = 50 + rng.normal(0, 3, DAYS * PER_DAY)
    day = (DAYS - 1) * PER_DAY
    v[day + 100:day + 136] = v[day + 100]  # frozen for three hours
    return v


def sparse(rng: np.random.Generator) -> np.ndarray:
    v = np.where(rng.random(DAYS * PER_DAY) < 0.04, rng.integers(1, 3, DAYS * PER_DAY), 0).astype(float)
    day = (DAYS - 1) * PER_DAY
    v[day + 120:day + 144] = rng.integers(2, 6, 24)  # two hours of errors at every step
    v[day + 200] = 9.0  # one large blip
    v[day + 250] = 5.6  # and one beyond the band but by less than min_abs_deviation
    return v


def bursty(rng: np.random.Generator) -> np.ndarray:
    v = rng.lognormal(0.0, 0.9, DAYS * PER_DAY) * 10
    day = (DAYS - 1) * PER_DAY
    v[day + 80:day + 104] *= 3.5  # two hours at three and a half times the usual level
    return v


def shift(rng: np.random.Generator) -> np.ndarray:
    v = 20 + rng.normal(0, 1, DAYS * PER_DAY)
    day = (DAYS - 1) * PER_DAY
    v[day + 50:day + 98] += 7  # four hours higher, then back
    v[day + 180:day + 184] -= 9  # and a short dip the rule does not allow (direction up)
    return v


CURVES = {
    "seasonal": (seasonal, {"for": "10m"}),
    "stuck": (stuck, {}),
    "sparse": (sparse, {"min_abs_deviation": 6.0}),
    "bursty": (bursty, {"direction": "up"}),
    "shift": (shift, {"direction": "up", "for": "5m"}),
}


def replayed_day(name: str, change=None):
    """The curve, its walk-forward band over the last day, the baseline config and what the replay fires
    (with the baseline's rules, or with `change(rules)`)."""
    make, alert = CURVES[name]
    values = make(np.random.default_rng(sum(map(ord, name))))
    series = Series(dict(LABELS), np.arange(len(values), dtype=np.int64) * STEP, values, STEP, name="test_metric")
    config = parse_config({"sources": {"p": {"url": "http://127.0.0.1:1"}},
                           "baselines": {name: {"expr": "test_metric", "step": "5m", "alert": alert}}})
    baseline = config.baselines[name]
    band = walk_forward_band(series, smartmetrics_fit(baseline.sensitivity), retrain_every=DAY,
                             history=14 * DAY, min_history=(DAYS - 1) * DAY).with_follow(series, AFTER)
    day0 = (DAYS - 1) * DAY
    keep = series.timestamps >= day0 - LEAD
    fed = slice_series(series, day0 - LEAD, series.end + 1)
    arrays = {k: getattr(band, k)[keep] for k in ("yhat", "lower", "upper", "stuck_after", "mean_lower", "mean_upper")}
    rules = AlertRules.of_baseline(baseline)
    fired = replay_alerts(fed, arrays["yhat"], arrays["lower"], arrays["upper"], change(rules) if change else rules,
                          stuck_after=arrays["stuck_after"], mean_lower=arrays["mean_lower"],
                          mean_upper=arrays["mean_upper"])
    return fed, arrays, config, fired


def stored_state(name: str, fed: Series, arrays: dict[str, np.ndarray]) -> BaselineState:
    """What the store would hold for the fitted series: the band and its training meta."""
    banded = np.isfinite(arrays["yhat"])
    stuck_after = np.nanmax(arrays["stuck_after"]) if np.isfinite(arrays["stuck_after"]).any() else 0.0
    limits = {side: (float(np.nanmax(arrays[f"mean_{side}"])) if np.isfinite(arrays[f"mean_{side}"]).any() else None)
              for side in ("lower", "upper")}
    sustained = {"window": 3600, **limits} if any(v is not None for v in limits.values()) else None
    meta = {"training": {"stuck_after": float(stuck_after), "sustained": sustained}}
    start = int(fed.timestamps[banded][0])
    return BaselineState(name, 0.0, (SeriesBand(dict(LABELS), start, STEP, arrays["yhat"][banded],
                                                arrays["lower"][banded], arrays["upper"][banded], meta),))


def promtool_values(values: np.ndarray) -> str:
    """promtool's expanded notation, one sample per step, `_` where there is none, exact floats."""
    return " ".join("_" if not np.isfinite(v) else repr(float(v)) for v in values)


def promtool_case(name: str, fed: Series, arrays: dict[str, np.ndarray], fired) -> dict:
    """One promtool test: the inputs and, at every evaluation of the replayed day, the firing alerts."""
    band_labels = {"baseline": name, **LABELS}
    inputs = [{"series": "test_metric" + format_labels(LABELS), "values": promtool_values(fed.values)}]
    for metric, key in ((YHAT, "yhat"), (LOWER, "lower"), (UPPER, "upper"), (STUCK_METRIC[0], "stuck_after"),
                        (MEAN_UPPER_METRIC[0], "mean_upper"), (MEAN_LOWER_METRIC[0], "mean_lower")):
        if np.isfinite(arrays[key]).any():
            inputs.append({"series": metric + format_labels(band_labels), "values": promtool_values(arrays[key])})
    names = {"anomaly": f"{name.capitalize()}Anomaly", "stuck": stuck_alert_name(name),
             "sustained": sustained_alert_name(name)}
    alert_labels = {**band_labels, "severity": "warning"}
    checks = []
    first = int(np.flatnonzero(np.isfinite(arrays["yhat"]))[0])
    for kind, firing in fired.by_kind.items():
        for i in range(first, len(fed)):
            checks.append({"eval_time": f"{i * STEP}s", "alertname": names[kind],
                           "exp_alerts": [{"exp_labels": alert_labels}] if firing[i] else []})
    return {"name": name, "interval": f"{STEP}s", "input_series": inputs, "alert_rule_test": checks}


def without_annotations(rules_text: str) -> str:
    doc = yaml.safe_load(rules_text)
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    return yaml.safe_dump(doc, sort_keys=False)


def promtool_agrees(promtool, folder, name: str, change=None) -> tuple[bool, str, object]:
    """Replay one curve, write its rules and promtool case under `folder`, run promtool."""
    fed, arrays, config, fired = replayed_day(name, change)
    # the fed series starts at promtool's time 0: shifted by whole steps, so the subqueries align the same
    fed = Series(fed.labels, fed.timestamps - fed.timestamps[0], fed.values, STEP, fed.name)
    folder.mkdir()
    rules = render_rule_files(config, {name: stored_state(name, fed, arrays)})[RULES_FILE]
    (folder / RULES_FILE).write_text(without_annotations(rules))
    case = promtool_case(name, fed, arrays, fired)
    (folder / "test.yml").write_text(yaml.safe_dump(
        {"rule_files": [RULES_FILE], "evaluation_interval": f"{STEP}s", "tests": [case]}, sort_keys=False))
    run = promtool("test", "rules", "test.yml", cwd=folder)
    return run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:], fired


@pytest.mark.slow
def test_every_alert_fires_in_prometheus_exactly_where_the_replay_fires(tmp_path, promtool) -> None:
    onsets: dict[str, int] = {}
    for name in CURVES:
        agrees, output, fired = promtool_agrees(promtool, tmp_path / name, name)
        assert agrees, f"{name}: promtool disagrees with the replay\n{output}"
        for kind in fired.by_kind:
            onsets[kind] = onsets.get(kind, 0) + int(fired.onsets_of(kind).sum())
    # the curves must exercise every alert, or the agreement above proves little
    assert onsets.get("anomaly", 0) >= 4 and onsets.get("stuck", 0) >= 1 and onsets.get("sustained", 0) >= 1, onsets


@pytest.mark.slow
@pytest.mark.parametrize(("name", "change"), [
    ("seasonal", lambda r: replace(r, keep_seconds=0.0)),  # the dip would alert twice
    ("seasonal", lambda r: replace(r, for_seconds=0.0)),  # the spike would fire ten minutes early
    ("sparse", lambda r: replace(r, min_abs_deviation=0.0)),  # small blips would alert
    ("shift", lambda r: replace(r, direction="both")),  # the dip would alert
])
def test_a_replay_that_leaves_out_part_of_the_rules_is_caught(tmp_path, promtool, name, change) -> None:
    agrees, output, _ = promtool_agrees(promtool, tmp_path / name, name, change)
    assert not agrees, f"{name}: promtool agreed with a replay that is not the rules"
