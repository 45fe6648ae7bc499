"""Alertmanager silences as on-call's `noise` on recorded alerts (`feedback.silences_as_noise`).

Alertmanager's webhook does not say which alerts were silenced; its API does (`GET /api/v2/silences`).
`parse_silences` reads that answer, `silence_matches` applies a silence's matchers to an alert's
labels as Alertmanager does (`=`, `!=`, `=~`, `!~`; regular expressions anchored; a missing label
is the empty string), and `silenced_alerts` picks the recorded alerts a silence was created for: it
matches their labels, covers part of their firing period, and was created or last changed after
they started (a silence set up beforehand, e.g. for planned maintenance, is not on-call's verdict on
the alert). Alerts with feedback already are left alone: an explicit `real` is never overridden.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from smartmetrics.engine.alerts import AlertRecord, WebhookError, parse_rfc3339


@dataclass(frozen=True)
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True


@dataclass(frozen=True)
class Silence:
    """One silence of Alertmanager's API (v2): who made it, when it applies, what it matches."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    updated_at: float
    created_by: str = ""
    comment: str = ""


def parse_silences(doc: Any) -> list[Silence]:
    """The silences of a `GET /api/v2/silences` answer; `ValueError` naming the silence and field."""
    if not isinstance(doc, list):
        raise ValueError(f"expected a JSON list of silences, got a {type(doc).__name__}")
    out = []
    for i, item in enumerate(doc):
        if not isinstance(item, dict) or not isinstance(item.get("matchers"), list):
            raise ValueError(f"silence {i}: not an object with matchers")
        try:
            matchers = tuple(Matcher(str(m["name"]), str(m["value"]), bool(m.get("isRegex", False)),
                                     bool(m.get("isEqual", True))) for m in item["matchers"])
            starts = parse_rfc3339(item["startsAt"], f"silence {i} startsAt")
            ends = parse_rfc3339(item["endsAt"], f"silence {i} endsAt")
            updated = parse_rfc3339(item["updatedAt"], f"silence {i} updatedAt") if item.get("updatedAt") else starts
        except (KeyError, TypeError) as exc:
            raise ValueError(f"silence {i}: missing or malformed {exc}") from None
        except WebhookError as exc:
            raise ValueError(str(exc)) from None
        out.append(Silence(str(item.get("id", i)), matchers, starts, ends, updated, str(item.get("createdBy", "")),
                           str(item.get("comment", ""))))
    return out


def matcher_matches(matcher: Matcher, labels: Mapping[str, str]) -> bool:
    """Whether one matcher holds on `labels`; an invalid regular expression matches nothing.

    >>> matcher_matches(Matcher("job", "api|web", is_regex=True), {"job": "api"})
    True
    >>> matcher_matches(Matcher("job", "ap", is_regex=True), {"job": "api"})  # anchored, as Alertmanager's
    False
    >>> matcher_matches(Matcher("zone", "", is_equal=True), {"job": "api"})  # missing: the empty string
    True
    """
    value = labels.get(matcher.name, "")
    if matcher.is_regex:
        try:
            found = re.fullmatch(matcher.value, value) is not None
        except re.error:
            return False
    else:
        found = value == matcher.value
    return found == matcher.is_equal


def silence_matches(silence: Silence, labels: Mapping[str, str]) -> bool:
    """Whether every matcher of `silence` holds on the alert's `labels`."""
    return all(matcher_matches(m, labels) for m in silence.matchers)


def first_seen(silences: Sequence[Silence], seen: dict[str, float]) -> list[Silence]:
    """The silences with `updated_at` as first seen (kept in `seen`, by silence id, for the ids still
    listed): Alertmanager moves `updatedAt` when a silence is expired or extended, so a silence planned
    before an alert would otherwise look made after it once on-call ends it early.

    >>> seen = {}
    >>> planned = Silence("a", (), 100.0, 200.0, updated_at=50.0)
    >>> [s.updated_at for s in first_seen([planned], seen)]
    [50.0]
    >>> [s.updated_at for s in first_seen([dataclasses.replace(planned, updated_at=150.0)], seen)]
    [50.0]
    """
    current = {s.id: min(seen.get(s.id, s.updated_at), s.updated_at) for s in silences}
    seen.clear()
    seen.update(current)
    return [dataclasses.replace(s, updated_at=current[s.id]) for s in silences]


def silenced_alerts(
    records: Iterable[AlertRecord], silences: Sequence[Silence], now: float
) -> dict[str, Silence]:
    """Per recorded alert id without feedback, the silence on-call created for it (see the module docstring)."""
    out: dict[str, Silence] = {}
    for record in records:
        if record.feedback is not None:
            continue
        end = record.ends_at if record.ends_at is not None else now
        for silence in silences:
            if (silence.starts_at <= end and silence.ends_at >= record.starts_at
                    and silence.updated_at >= record.starts_at and silence_matches(silence, record.labels)):
                out[record.id] = silence
                break
    return out
