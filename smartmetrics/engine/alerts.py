"""The alerts smartmetrics' rules fired, as Alertmanager reported them, and what on-call said of them.

Pure data and transforms: `parse_webhook` reads Alertmanager's webhook payload (version 4),
`new_record` ties one alert to the band of its series, `merge_records` folds repeats (the same
fingerprint and start) into one record, bounded per baseline, and `feedback_factors` turns `noise`
on one side of a series' band into a bounded widening of that side at the next retrain
(`widen_band`; `feedback_schedule` gives the same widening at each retrain of a walk-forward replay,
from the feedback given before its cut-off). Reading the payload off the wire and the file on disk
is the adapters' business.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from smartmetrics.engine.series import labels_key
from smartmetrics.engine.state import SeriesBand

WEBHOOK_VERSION = "4"
MAX_PER_BASELINE = 1000  # records kept per baseline, the newest by start
FEEDBACK = ("noise", "real")
SIDES = ("above", "below")
# How on-call's `noise` widens a side of a series' band at the next retrain. Chosen on the tuning
# seeds of the synthetic corpus (`python -m smartmetrics.benchmarks.feedback --seeds 0,1`, BENCHMARKS.md):
# a single `noise` is already worth acting on (most series get one false alert a week, not two), and a
# widening of x1.25 per `noise` rarely holds the next excursion of a series whose noise went 2-4
# half-bands out, hence the margin over the farthest value called noise.
WIDEN_STEP = 1.25  # each `noise` on a side widens that half-band by this factor...
NOISE_MARGIN = 1.5  # ...or enough to hold the farthest value called noise with this margin, if more...
WIDEN_MAX = 3.0  # ...up to this factor in all
MIN_NOISE = 1  # `noise` alerts on one side before it is widened at all
ALERT_ONLY_LABELS = ("alertname", "severity", "baseline")  # on the alert, not on the series


class WebhookError(ValueError):
    """A payload that is not Alertmanager's webhook (version 4); the message says what is wrong."""


@dataclass(frozen=True)
class AlertRecord:
    """One firing period of one smartmetrics alert, with the band its series had when it started."""

    id: str
    baseline: str
    fingerprint: str
    labels: dict[str, str]  # the alert's labels as Alertmanager sent them
    series: str  # the key of the band's labels (or of the alert's series labels when no band matched)
    starts_at: float
    ends_at: float | None = None  # None while firing
    value: float | None = None
    yhat: float | None = None
    lower: float | None = None
    upper: float | None = None
    side: str | None = None  # above | below the band (None when the value is unknown)
    feedback: str | None = None  # noise | real
    received_at: float = 0.0
    feedback_at: float | None = None  # when the feedback was given (None: unknown, counted from the start)

    def to_doc(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> AlertRecord:
        """A record from its JSON form; `ValueError` naming the field when one is missing or malformed."""
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [n for n in ("id", "baseline", "fingerprint", "labels", "series", "starts_at") if n not in doc]
        if missing:
            raise ValueError(f"alert record without {', '.join(missing)}")
        for name in ("starts_at", "ends_at", "feedback_at"):
            value = doc.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ValueError(f"alert record {doc['id']}: {name} must be Unix seconds, not {value!r}")
        record = cls(**{k: v for k, v in doc.items() if k in names})
        if record.feedback not in (None, *FEEDBACK) or record.side not in (None, *SIDES):
            raise ValueError(f"alert record {record.id}: bad feedback {record.feedback!r} or side {record.side!r}")
        return record


@dataclass(frozen=True)
class IncomingAlert:
    """One alert of a webhook payload that belongs to a configured baseline."""

    baseline: str
    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float | None


def parse_rfc3339(text: str, what: str) -> float:
    """Unix seconds from Alertmanager's RFC 3339 times (nanoseconds allowed); `WebhookError` otherwise.

    >>> parse_rfc3339("2026-12-06T10:00:00.123456789Z", "startsAt")
    1796551200.123456
    """
    if not isinstance(text, str):
        raise WebhookError(f"{what} is not a string")
    body = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    head, dot, rest = body.partition(".")
    if dot:  # Go writes up to 9 fractional digits; Python reads 6
        digits = len(rest) - len(rest.lstrip("0123456789"))
        body = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}"
    try:
        stamp = datetime.fromisoformat(body)
    except ValueError:
        raise WebhookError(f"{what}={text!r} is not an RFC 3339 time") from None
    if stamp.tzinfo is None:
        raise WebhookError(f"{what}={text!r} has no time zone")
    return stamp.timestamp()


def _strings(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise WebhookError(f"{what} must be an object of strings")
    return dict(value)


def parse_webhook(body: bytes, known: Collection[str]) -> tuple[list[IncomingAlert], int]:
    """The alerts of a webhook payload whose `baseline` label names a known baseline, and how many
    others it carried (ignored: another system's alerts routed to us too); `WebhookError` for a body
    that is not a version-4 payload."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookError(f"the body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise WebhookError(f"the body is a JSON {type(doc).__name__}, not Alertmanager's webhook object")
    if doc.get("version") != WEBHOOK_VERSION:
        raise WebhookError(f"webhook version {doc.get('version')!r} is not supported (expected \"4\")")
    alerts = doc.get("alerts")
    if not isinstance(alerts, list):
        raise WebhookError("the payload has no alerts list")
    kept, ignored = [], 0
    for i, alert in enumerate(alerts):
        if not isinstance(alert, dict):
            raise WebhookError(f"alerts[{i}] is not an object")
        labels = _strings(alert.get("labels"), f"alerts[{i}].labels")
        if labels.get("baseline") not in known:
            ignored += 1
            continue
        fingerprint = alert.get("fingerprint")
        if not isinstance(fingerprint, str) or not fingerprint:
            raise WebhookError(f"alerts[{i}] has no fingerprint")
        status = alert.get("status", doc.get("status"))
        if status not in ("firing", "resolved"):
            raise WebhookError(f"alerts[{i}].status {status!r} is neither firing nor resolved")
        starts = parse_rfc3339(alert.get("startsAt"), f"alerts[{i}].startsAt")
        ends = parse_rfc3339(alert.get("endsAt"), f"alerts[{i}].endsAt") if status == "resolved" else None
        kept.append(IncomingAlert(labels["baseline"], fingerprint, labels,
                                  _strings(alert.get("annotations", {}), f"alerts[{i}].annotations"), starts, ends))
    return kept, ignored


def alert_id(fingerprint: str, starts_at: float) -> str:
    """A short stable id of one firing period: the same alert restarting later is another record.

    >>> alert_id("abc", 1700000000.0)
    'b42429d332f4'
    """
    return hashlib.sha256(f"{fingerprint}@{starts_at:.3f}".encode()).hexdigest()[:12]


def match_band(labels: Mapping[str, str], bands: Iterable[SeriesBand]) -> SeriesBand | None:
    """The band whose labels all appear on the alert (the most specific one if several do)."""
    best, size = None, -1
    for band in bands:
        if len(band.labels) > size and all(labels.get(k) == v for k, v in band.labels.items()):
            best, size = band, len(band.labels)
    return best


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def side_of(value: float | None, yhat: float | None) -> str | None:
    """Which side of the band an alert left by: its value against the forecast (None if either is unknown).

    >>> side_of(180.0, 100.0), side_of(20.0, 100.0), side_of(None, 100.0)
    ('above', 'below', None)
    """
    if value is None or yhat is None:
        return None
    return "above" if value > yhat else "below"


def new_record(alert: IncomingAlert, band: SeriesBand | None, received: float) -> AlertRecord:
    """The record of an alert: its value (the `value` annotation the generated rules carry) and the
    band of its series at its start, and which side of the band it left by."""
    at = band.at(alert.starts_at) if band is not None else None
    yhat, lower, upper = at if at is not None else (None, None, None)
    value = _number(alert.annotations.get("value"))
    side = side_of(value, yhat)
    series = band.key if band is not None else labels_key(
        {k: v for k, v in alert.labels.items() if k not in ALERT_ONLY_LABELS})
    return AlertRecord(alert_id(alert.fingerprint, alert.starts_at), alert.baseline, alert.fingerprint,
                       alert.labels, series, alert.starts_at, alert.ends_at, value, yhat, lower, upper, side,
                       received_at=received)


def merge_records(
    existing: Iterable[AlertRecord], new: Iterable[AlertRecord], limit: int = MAX_PER_BASELINE
) -> list[AlertRecord]:
    """`existing` with `new` folded in by id: a repeat keeps what was recorded at the start (band,
    feedback) and takes the later end; at most `limit` per baseline, the newest by start kept."""
    table = {r.id: r for r in existing}
    for record in new:
        old = table.get(record.id)
        if old is None:
            table[record.id] = record
        elif record.ends_at is not None and old.ends_at != record.ends_at:
            table[record.id] = dataclasses.replace(old, ends_at=record.ends_at)
    ordered = sorted(table.values(), key=lambda r: (r.starts_at, r.id), reverse=True)
    counts: dict[str, int] = {}
    kept = []
    for record in ordered:
        counts[record.baseline] = counts.get(record.baseline, 0) + 1
        if counts[record.baseline] <= limit:
            kept.append(record)
    return kept[::-1]


def excursion(record: AlertRecord) -> float | None:
    """How far past its band an alert's value was at its start: |value - yhat| over the half-band on
    its side (1.0: on the edge); None when the record lacks the value or the band.

    >>> excursion(AlertRecord("a", "q", "f", {}, "{}", 0, value=130, yhat=100, lower=90, upper=110, side="above"))
    3.0
    """
    edge = record.upper if record.side == "above" else record.lower
    if record.value is None or record.yhat is None or edge is None or edge == record.yhat:
        return None
    return abs(record.value - record.yhat) / abs(edge - record.yhat)


def feedback_factors(records: Iterable[AlertRecord], baseline: str) -> dict[str, dict[str, float]]:
    """Per series key of `baseline`, the factor each side of its band widens by once it has `MIN_NOISE`
    `noise` alerts: `WIDEN_STEP` per `noise`, or enough for the widened edge to hold the farthest value
    called noise with `NOISE_MARGIN` to spare (`excursion`), whichever is more, at most `WIDEN_MAX`;
    none on a side with a `real` alert (a real alert is never absorbed).

    >>> r = [AlertRecord(str(i), "q", "f", {}, "{}", i, side="above", feedback="noise") for i in range(3)]
    >>> feedback_factors(r, "q")
    {'{}': {'above': 1.9531}}
    >>> far = AlertRecord("x", "q", "f", {}, "{}", 9, value=115, yhat=100, upper=110, side="above", feedback="noise")
    >>> feedback_factors([far], "q")
    {'{}': {'above': 2.25}}
    """
    noise: dict[tuple[str, str], list[AlertRecord]] = {}
    real: set[tuple[str, str]] = set()
    for r in records:
        if r.baseline != baseline or r.side is None:
            continue
        if r.feedback == "noise":
            noise.setdefault((r.series, r.side), []).append(r)
        elif r.feedback == "real":
            real.add((r.series, r.side))
    out: dict[str, dict[str, float]] = {}
    for (series, side), noted in sorted(noise.items()):
        if len(noted) >= MIN_NOISE and (series, side) not in real:
            farthest = max((x for x in map(excursion, noted) if x is not None), default=0.0)
            factor = min(max(WIDEN_STEP ** len(noted), NOISE_MARGIN * farthest), WIDEN_MAX)
            out.setdefault(series, {})[side] = round(factor, 4)
    return out


def given_before(records: Iterable[AlertRecord], cutoff: float) -> list[AlertRecord]:
    """The records whose feedback was given before `cutoff` (a record that does not say when counts
    from its alert's start, the earliest on-call could have given it); no feedback, not included."""
    return [r for r in records if r.feedback is not None
            and (r.feedback_at if r.feedback_at is not None else r.starts_at) < cutoff]


def feedback_schedule(
    records: Iterable[AlertRecord], baseline: str, series: str
) -> Callable[[float], dict[str, float]]:
    """For one series, the widening (`feedback_factors`) a retrain with cut-off `t` applies: only the
    feedback given before `t` counts, so a walk-forward replay never looks ahead."""
    mine = [r for r in records if r.baseline == baseline and r.series == series and r.feedback is not None]
    return lambda cutoff: feedback_factors(given_before(mine, cutoff), baseline).get(series, {})


def widen_edges(
    yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray, factors: Mapping[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) with each side's half-band (edge minus yhat) scaled by its factor.

    >>> widen_edges(np.array([10.0]), np.array([8.0]), np.array([12.0]), {"above": 1.5})
    (array([8.]), array([13.]))
    """
    if factors.get("above", 1.0) != 1.0:
        upper = yhat + (upper - yhat) * factors["above"]
    if factors.get("below", 1.0) != 1.0:
        lower = yhat - (yhat - lower) * factors["below"]
    return lower, upper


def widen_band(band: SeriesBand, factors: Mapping[str, float]) -> SeriesBand:
    """`band` with each side's half-band (edge minus yhat) scaled by its factor (`widen_edges`), and
    the factors in its meta (`feedback`) so `classify` and the API can show them."""
    if not factors:
        return band
    lower, upper = widen_edges(band.yhat, band.lower, band.upper, factors)
    meta = {**band.meta, "feedback": {side: round(float(f), 4) for side, f in sorted(factors.items())}}
    return dataclasses.replace(band, lower=lower, upper=upper, meta=meta)
