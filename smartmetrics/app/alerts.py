"""The daemon's alert history: what Alertmanager reported of smartmetrics' alerts, and on-call's feedback.

`AlertBook` holds the records in memory, folds each webhook into them with the band of the alert's
series (`smartmetrics.engine.alerts`) and writes the whole history to `<store>/alerts.json` after
every change (atomic; read back at start), and marks `noise` where on-call silenced an alert in
Alertmanager (`feedback.silences_as_noise`). Used by the daemon's HTTP endpoints and, on the file
alone, by `smartmetrics alerts` and `smartmetrics feedback`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from smartmetrics.adapters.alert_store import AlertStoreError, load_alerts, save_alerts
from smartmetrics.adapters.api import MatchError, matches, parse_matchers, parse_time
from smartmetrics.engine.alerts import (
    FEEDBACK,
    AlertRecord,
    WebhookError,
    match_band,
    merge_records,
    new_record,
    parse_webhook,
)
from smartmetrics.engine.durations import parse_duration
from smartmetrics.engine.silences import Silence, silenced_alerts
from smartmetrics.engine.state import SeriesBand

log = logging.getLogger(__name__)


class FeedbackError(ValueError):
    """Feedback that cannot be recorded: an unknown alert or a word other than noise|real."""


def parse_since(text: str, now: float) -> float:
    """A `since` bound: a duration back from now (`7d`) or a time (Unix seconds or RFC 3339)."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        return parse_time(text, "since")
    except ValueError:
        raise ValueError(f"since={text!r} is neither a duration (7d) nor a time (Unix seconds or RFC 3339)") from None


def select_records(
    records: Iterable[AlertRecord], baseline: str | None, match: str, since: float | None
) -> list[AlertRecord]:
    """The records of `baseline` (all if None) whose labels satisfy `match`, started at or after
    `since`, newest first; `MatchError` for a bad selector."""
    matchers = parse_matchers(match)
    return sorted((r for r in records if (baseline is None or r.baseline == baseline)
                   and (since is None or r.starts_at >= since) and matches(r.labels, matchers)),
                  key=lambda r: r.starts_at, reverse=True)


def set_feedback(
    records: list[AlertRecord], alert_id: str, feedback: str, now: float | None = None
) -> list[AlertRecord]:
    """`records` with `feedback` on the alert `alert_id`, given at `now` (a replay counts it from then
    on); `FeedbackError` if there is none or the word is wrong."""
    if feedback not in FEEDBACK:
        raise FeedbackError(f"feedback must be one of {', '.join(FEEDBACK)}, not {feedback!r}")
    if not any(r.id == alert_id for r in records):
        raise FeedbackError(f"no recorded alert with id {alert_id!r}")
    return [_noted(r, feedback, now) if r.id == alert_id else r for r in records]


def _noted(record: AlertRecord, feedback: str, now: float | None) -> AlertRecord:
    return dataclasses.replace(record, feedback=feedback, feedback_at=now)


def parse_feedback_body(body: bytes) -> str:
    """The word of a feedback request body `{"feedback": "noise"|"real"}`."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise FeedbackError('the body must be JSON: {"feedback": "noise"} or {"feedback": "real"}') from None
    if not isinstance(doc, dict) or not isinstance(doc.get("feedback"), str):
        raise FeedbackError('the body must be {"feedback": "noise"} or {"feedback": "real"}')
    return doc["feedback"]


class AlertBook:
    """The alert history of one store, safe to use from the server's threads."""

    def __init__(self, root: str | Path, on_store_error: Callable[[str], None] = lambda op: None):
        self.root = root
        self._on_store_error = on_store_error
        self._lock = threading.Lock()
        try:
            self.records = load_alerts(root)
        except AlertStoreError as exc:
            log.error("alert history: %s; starting an empty one (the file is kept until the next alert)", exc)
            on_store_error("read")
            self.records = []

    def _save(self) -> None:
        try:
            save_alerts(self.root, self.records)
        except OSError as exc:
            log.error("alert history: cannot write %s: %s (kept in memory)", self.root, exc)
            self._on_store_error("write")

    def receive(
        self, body: bytes, known: Collection[str], bands: Callable[[str], Iterable[SeriesBand]], now: float
    ) -> tuple[list[AlertRecord], set[str], int]:
        """Fold a webhook payload in: (the records it carried, the ids among them seen for the first
        time, how many alerts of others it ignored); `WebhookError` for a payload that is not Alertmanager's."""
        incoming, ignored = parse_webhook(body, known)
        made = [new_record(a, match_band(a.labels, bands(a.baseline)), now) for a in incoming]
        fresh: set[str] = set()
        if made:
            with self._lock:
                fresh = {r.id for r in made} - {r.id for r in self.records}
                self.records = merge_records(self.records, made)
                self._save()
        return made, fresh, ignored

    def silence_as_noise(self, silences: Sequence[Silence], now: float) -> dict[str, Silence]:
        """Mark `noise` (given at `now`) on each alert without feedback that on-call silenced
        (`smartmetrics.engine.silences.silenced_alerts`); which alerts, by id, with their silence."""
        with self._lock:
            found = silenced_alerts(self.records, silences, now)
            if found:
                self.records = [_noted(r, "noise", now) if r.id in found else r for r in self.records]
                self._save()
        for alert_id, silence in sorted(found.items()):
            log.info("alert %s: noise, silenced in Alertmanager by %s (silence %s: %s)", alert_id,
                     silence.created_by or "?", silence.id, silence.comment)
        return found

    def feedback(self, alert_id: str, feedback: str, now: float | None = None) -> AlertRecord:
        """Record on-call's word on one alert, given at `now`; `FeedbackError` if it cannot be."""
        with self._lock:
            self.records = set_feedback(self.records, alert_id, feedback, now)
            self._save()
            return next(r for r in self.records if r.id == alert_id)


def alerts_doc(book: AlertBook, query: Mapping[str, str], known: Collection[str], now: float) -> tuple[int, dict[str, Any]]:
    """The `GET /api/v1/alerts` answer: the recorded alerts matching `baseline`, `match` and `since`."""
    baseline = query.get("baseline") or None
    if baseline is not None and baseline not in known:
        return 404, {"status": "error", "error": f"unknown baseline {baseline!r}"}
    try:
        since = parse_since(query["since"], now) if query.get("since") else None
        found = select_records(book.records, baseline, query.get("match", ""), since)
    except (MatchError, ValueError) as exc:
        return 400, {"status": "error", "error": str(exc)}
    return 200, {"status": "success", "data": [r.to_doc() for r in found]}


def receive_doc(
    book: AlertBook, body: bytes, known: Collection[str], bands: Callable[[str], Iterable[SeriesBand]], now: float,
    count: Callable[[str, str], None],
) -> tuple[int, dict[str, Any]]:
    """The `POST /api/v1/alerts` answer; `count(what, label)` tallies received, recorded and rejected."""
    try:
        made, fresh, ignored = book.receive(body, known, bands, now)
    except WebhookError as exc:
        count("rejected", "invalid")
        log.warning("alert webhook rejected: %s", exc)
        return 400, {"status": "error", "error": str(exc)}
    for record in made:
        count("received", record.baseline)
        if record.id in fresh:
            count("recorded", record.baseline)
    return 200, {"status": "success", "data": {"recorded": [r.id for r in made], "ignored": ignored}}


def feedback_doc(book: AlertBook, alert_id: str, body: bytes, now: float | None = None) -> tuple[int, dict[str, Any]]:
    """The `POST /api/v1/alerts/<id>/feedback` answer."""
    try:
        record = book.feedback(alert_id, parse_feedback_body(body), now)
    except FeedbackError as exc:
        return (404 if str(exc).startswith("no recorded") else 400), {"status": "error", "error": str(exc)}
    log.info("alert %s (%s %s): feedback %s", record.id, record.baseline, record.series, record.feedback)
    return 200, {"status": "success", "data": record.to_doc()}
