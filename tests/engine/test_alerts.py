"""Alertmanager's webhook read, repeats merged, and feedback turned into a bounded widening."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from smartmetrics.engine.alerts import (
    NOISE_MARGIN,
    WIDEN_MAX,
    WIDEN_STEP,
    AlertRecord,
    WebhookError,
    feedback_factors,
    feedback_schedule,
    given_before,
    match_band,
    merge_records,
    new_record,
    parse_webhook,
    widen_band,
)
from smartmetrics.engine.state import SeriesBand


def payload(*alerts: dict, version: str = "4", status: str = "firing") -> bytes:
    return json.dumps({"version": version, "status": status, "receiver": "smartmetrics", "groupKey": "{}",
                       "alerts": list(alerts)}).encode()


def alert(baseline: str = "qps", status: str = "firing", starts: str = "2026-12-06T10:00:00.123456789Z",
          ends: str = "0001-01-01T00:00:00Z", value: str = "180", **labels: str) -> dict:
    return {"status": status, "labels": {"alertname": "SmartmetricsAnomaly", "baseline": baseline, **labels},
            "annotations": {"value": value}, "startsAt": starts, "endsAt": ends, "fingerprint": "f00d" + baseline}


def band(**labels: str) -> SeriesBand:
    n = 10
    return SeriesBand(labels or {"job": "api"}, 1796551200 - 300, 300, np.full(n, 100.0), np.full(n, 90.0),
                      np.full(n, 110.0))


def test_keeps_only_configured_baselines_and_reads_go_times() -> None:
    kept, ignored = parse_webhook(payload(alert(job="api"), alert("other"), {"labels": {"x": "y"}}), {"qps"})
    assert ignored == 2 and len(kept) == 1
    assert kept[0].starts_at == pytest.approx(1796551200.123456) and kept[0].ends_at is None


@pytest.mark.parametrize("body, why", [
    (b"not json", "not JSON"),
    (b"[1]", "JSON list"),
    (payload(alert(), version="3"), "version '3'"),
    (json.dumps({"version": "4"}).encode(), "no alerts list"),
    (payload(alert(starts="yesterday")), "startsAt='yesterday'"),
    (payload({**alert(), "fingerprint": ""}), "no fingerprint"),
    (payload({**alert(), "labels": {"baseline": "qps", "n": 1}}), "object of strings"),
])
def test_other_payloads_are_refused_with_the_reason(body: bytes, why: str) -> None:
    with pytest.raises(WebhookError, match=why):
        parse_webhook(body, {"qps"})


def test_a_record_carries_the_band_of_its_series_at_its_start() -> None:
    (incoming,), _ = parse_webhook(payload(alert(job="api", instance="a")), {"qps"})
    chosen = match_band(incoming.labels, [band(job="web"), band(job="api"), band(job="api", instance="a")])
    assert chosen is not None and chosen.labels == {"job": "api", "instance": "a"}
    record = new_record(incoming, chosen, now := 1796551300.0)
    assert (record.value, record.yhat, record.lower, record.upper, record.side) == (180.0, 100.0, 90.0, 110.0, "above")
    assert record.series == chosen.key and record.received_at == now
    assert new_record(incoming, None, now).yhat is None


def test_repeats_merge_and_a_resolution_sets_the_end() -> None:
    (firing,), _ = parse_webhook(payload(alert()), {"qps"})
    (resolved,), _ = parse_webhook(payload(alert(status="resolved", ends="2026-12-06T10:30:00Z")), {"qps"})
    first = new_record(firing, band(), 1.0)
    noted = AlertRecord.from_doc({**first.to_doc(), "feedback": "noise"})
    merged = merge_records([noted], [new_record(firing, band(), 2.0), new_record(resolved, band(), 3.0)])
    assert len(merged) == 1
    assert merged[0].ends_at == 1796553000.0 and merged[0].feedback == "noise" and merged[0].received_at == 1.0


def test_history_is_bounded_per_baseline_keeping_the_newest() -> None:
    records = [AlertRecord(f"{b}{i}", b, "f", {}, "{}", float(i)) for b in ("a", "b") for i in range(5)]
    kept = merge_records([], records, limit=3)
    assert sorted(r.id for r in kept) == ["a2", "a3", "a4", "b2", "b3", "b4"]


def noted(feedback: str, side: str, n: int, series: str = "{}") -> list[AlertRecord]:
    return [AlertRecord(f"{feedback}{side}{i}", "q", "f", {}, series, float(i), side=side, feedback=feedback)
            for i in range(n)]


def test_noise_widens_that_side_bounded_and_real_cancels_it() -> None:
    assert feedback_factors(noted("noise", "above", 1), "q") == {"{}": {"above": 1.25}}
    assert feedback_factors(noted("noise", "above", 2), "q") == {"{}": {"above": 1.5625}}
    assert feedback_factors(noted("noise", "below", 9), "q") == {"{}": {"below": WIDEN_MAX}}
    assert feedback_factors(noted("noise", "above", 3) + noted("real", "above", 1), "q") == {}
    assert feedback_factors(noted("noise", "above", 3) + noted("real", "below", 1), "q") == {"{}": {"above": 1.9531}}
    assert feedback_factors(noted("noise", "above", 3), "other") == {}


def excursion_noise(value: float, side: str = "above") -> AlertRecord:
    return AlertRecord(f"n{value}", "q", "f", {}, "{}", 0.0, value=value, yhat=100.0, lower=90.0, upper=110.0,
                       side=side, feedback="noise")


def test_noise_far_past_the_band_widens_enough_to_hold_it_with_a_margin_up_to_the_bound() -> None:
    # 2 half-bands out: widened to 2 x NOISE_MARGIN, more than one WIDEN_STEP
    assert feedback_factors([excursion_noise(120.0)], "q") == {"{}": {"above": 2 * NOISE_MARGIN}}
    assert feedback_factors([excursion_noise(75.0, "below")], "q") == {"{}": {"below": WIDEN_MAX}}  # 2.5 out
    assert feedback_factors([excursion_noise(105.0)], "q") == {"{}": {"above": WIDEN_STEP}}  # inside: a step
    held = widen_band(band(), feedback_factors([excursion_noise(120.0)], "q")["{}"])
    assert held.upper[0] > 120.0 and held.lower[0] == 90.0


def test_a_replay_counts_only_the_feedback_given_before_each_retrain() -> None:
    given = [dataclasses.replace(r, feedback_at=1000.0 + 100 * i) for i, r in enumerate(noted("noise", "above", 2))]
    unsaid = AlertRecord("u", "q", "f", {}, "{}", 0.0, side="above")
    schedule = feedback_schedule([*given, unsaid], "q", "{}")
    assert schedule(1000.0) == {}  # given at the cut-off: not yet seen
    assert schedule(1000.5) == {"above": 1.25}
    assert schedule(1101.0) == {"above": 1.5625}
    assert feedback_schedule(given, "q", "other")(5000.0) == {}
    late = dataclasses.replace(given[0], feedback_at=None, starts_at=50.0)  # no time given: from its start
    assert given_before([late, unsaid], 60.0) == [late]


def test_widening_moves_only_the_named_side_and_is_recorded() -> None:
    wider = widen_band(band(), {"above": 2.0})
    assert wider.upper[0] == 120.0 and wider.lower[0] == 90.0 and wider.meta["feedback"] == {"above": 2.0}
    same = band()
    assert widen_band(same, {}) is same
