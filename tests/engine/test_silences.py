"""Alertmanager's silences read, matched as Alertmanager matches, and turned into `noise` on the alerts
on-call silenced (never over an explicit word)."""

from __future__ import annotations

import dataclasses

import pytest

from smartmetrics.engine.alerts import AlertRecord
from smartmetrics.engine.silences import (
    Matcher,
    Silence,
    first_seen,
    parse_silences,
    silence_matches,
    silenced_alerts,
)

T0 = 1_796_551_200.0  # 2026-12-06T10:00:00Z
LABELS = {"alertname": "SmartmetricsAnomaly", "baseline": "qps", "job": "api", "instance": "a"}


def api_silence(**over) -> dict:
    return {"id": "s1", "status": {"state": "active"}, "createdBy": "oncall", "comment": "flaky",
            "matchers": [{"name": "baseline", "value": "qps", "isRegex": False, "isEqual": True},
                         {"name": "instance", "value": "a|b", "isRegex": True}],
            "startsAt": "2026-12-06T10:05:00.000Z", "endsAt": "2026-12-06T11:05:00Z",
            "updatedAt": "2026-12-06T10:05:00.123456789Z", **over}


def record(id: str, starts: float, ends: float | None = None, feedback: str | None = None, **labels: str) -> AlertRecord:
    return AlertRecord(id, "qps", "f" + id, {**LABELS, **labels}, "{}", starts, ends, side="above", feedback=feedback)


def test_the_api_answer_is_read_with_its_matchers_and_times() -> None:
    (s,) = parse_silences([api_silence()])
    assert s.id == "s1" and s.created_by == "oncall" and s.starts_at == T0 + 300 and s.ends_at == T0 + 3900
    assert s.matchers == (Matcher("baseline", "qps"), Matcher("instance", "a|b", is_regex=True))


@pytest.mark.parametrize("doc, why", [
    ({"silences": []}, "a JSON list"),
    ([{"id": "x"}], "silence 0: not an object with matchers"),
    ([api_silence(startsAt="soon")], "silence 0 startsAt"),
    ([api_silence(matchers=[{"name": "job"}])], "silence 0: missing or malformed"),
])
def test_a_malformed_answer_is_an_error_naming_the_silence(doc, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_silences(doc)


@pytest.mark.parametrize("matcher, matches", [
    (Matcher("job", "api"), True),
    (Matcher("job", "api", is_equal=False), False),
    (Matcher("job", "a.i", is_regex=True), True),
    (Matcher("job", "a", is_regex=True), False),  # anchored, as Alertmanager's
    (Matcher("job", "web|db", is_regex=True, is_equal=False), True),
    (Matcher("zone", ""), True),  # a missing label is the empty string
    (Matcher("job", "(", is_regex=True), False),  # an invalid expression matches nothing
])
def test_matchers_hold_as_in_alertmanager(matcher: Matcher, matches: bool) -> None:
    assert silence_matches(Silence("s", (matcher,), T0, T0, T0), LABELS) is matches


def test_only_alerts_silenced_while_firing_by_a_silence_made_for_them_become_noise() -> None:
    (silence,) = parse_silences([api_silence()])
    records = [
        record("firing", T0),  # fired at 10:00, silenced at 10:05: on-call's verdict
        record("resolved-in-it", T0, T0 + 600),
        record("other-instance", T0, instance="c"),
        record("over-before", T0 - 7200, T0 - 3600),  # resolved before the silence began
        record("after-the-silence-was-made", T0 + 600),  # the silence was set before it fired (maintenance)
        record("said-real", T0, feedback="real"),  # never overridden
        record("said-noise", T0, feedback="noise"),
    ]
    found = silenced_alerts(records, [silence], now=T0 + 900)
    assert sorted(found) == ["firing", "resolved-in-it"] and found["firing"] is silence
    assert silenced_alerts(records, [], now=T0 + 900) == {}


def test_a_planned_silence_ended_early_is_still_planned() -> None:
    """Expiring or extending a silence moves its updatedAt; what counts is when it was first seen."""
    record = AlertRecord(id="a1", baseline="q", fingerprint="f", labels={"baseline": "q"}, series="{}",
                         starts_at=1_000.0)
    planned = Silence("s1", (), starts_at=1_200.0, ends_at=5_000.0, updated_at=900.0)
    seen: dict[str, float] = {}
    assert silenced_alerts([record], first_seen([planned], seen), now=2_000.0) == {}
    expired = dataclasses.replace(planned, ends_at=1_800.0, updated_at=1_800.0)  # on-call ends it early
    assert silenced_alerts([record], [expired], now=2_000.0)  # read alone, it looks made after the alert
    assert silenced_alerts([record], first_seen([expired], seen), now=2_000.0) == {}
