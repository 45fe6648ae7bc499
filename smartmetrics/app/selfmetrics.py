"""The daemon's own metrics, in a registry of its own (never prometheus-client's global one).

What an operator alerts on, e.g. `time() - smartmetrics_last_successful_retrain_timestamp_seconds > 26*3600`
or `smartmetrics_forecast_hours_remaining < 2`. A daemon restarted from its store restores what the
store knows (`SelfMetrics.restore`): the last retrain time, the series by curve type and model, the
series settling after a release; its counters start at 0 for every baseline, so `rate()` and
`increase()` see the first fit after the restart instead of a series that only appears with it.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from smartmetrics.adapters.remote_write import PushResult
from smartmetrics.engine.state import BaselineState, SeriesBand


def series_kinds(series: Iterable[SeriesBand]) -> Tally[tuple[str, str]]:
    """How many bands of each (curve type, heaviest model), from each band's fit metadata; a series
    still learning (younger than its baseline's `min_history`: no band yet) counts as `learning`."""
    return Tally(("learning" if _learning(b) else str(b.meta.get("curve_type")), str(b.meta.get("model")))
                 for b in series)


def _learning(band: SeriesBand) -> bool:
    training = band.meta.get("training")
    return isinstance(training, dict) and bool(training.get("withheld")) and "learning_until" in training


def settling_count(series: Iterable[SeriesBand]) -> int:
    """How many bands are withdrawn while a release settles (`smartmetrics.engine.releases`)."""
    return sum(1 for b in series if not (b.meta.get("release") or {}).get("settled", True))


def adjusted_count(series: Iterable[SeriesBand]) -> int:
    """How many bands on-call's feedback widened (`smartmetrics.engine.alerts.widen_band`)."""
    return sum(1 for b in series if b.meta.get("feedback"))


class SelfMetrics:
    """Counters, gauges and histograms describing fits, the store and the sources."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.fit_duration = Histogram(
            "smartmetrics_fit_duration_seconds", "Wall time of one baseline's retrain (fetch, fit, store).",
            ["baseline"], registry=r, buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 7200),
        )
        self.fits = Counter("smartmetrics_fits", "Series fits, by result.", ["baseline", "result"], registry=r)
        self.fit_failures = Counter(
            "smartmetrics_fit_failures", "Series or baseline fits that failed, by reason.", ["baseline", "reason"],
            registry=r,
        )
        self.series = Gauge(
            "smartmetrics_series", "Fitted series, by curve type and the ensemble's heaviest model.",
            ["baseline", "curve_type", "model"], registry=r,
        )
        self.last_success = Gauge(
            "smartmetrics_last_successful_retrain_timestamp_seconds",
            "Unix time of the baseline's last retrain that fitted its series.", ["baseline"], registry=r,
        )
        self.hours_remaining = Gauge(
            "smartmetrics_forecast_hours_remaining",
            "Hours until the baseline's earliest-ending forecast runs out.", ["baseline"], registry=r,
        )
        self.store_errors = Counter(
            "smartmetrics_store_errors", "Store files that could not be read or written.", ["operation"], registry=r,
        )
        self.source_errors = Counter(
            "smartmetrics_source_request_errors", "Baseline queries that failed after retries.", ["source", "baseline"],
            registry=r,
        )
        self.source_latency = Histogram(
            "smartmetrics_source_request_duration_seconds", "Wall time to fetch one baseline's history.",
            ["source"], registry=r, buckets=(0.1, 0.5, 1, 5, 15, 60, 300),
        )
        self.releases = Counter(
            "smartmetrics_releases", "Releases seen by the release markers of a baseline.", ["baseline"], registry=r
        )
        self.settling = Gauge(
            "smartmetrics_series_settling", "Series whose band is withdrawn while a release settles.", ["baseline"],
            registry=r,
        )
        self.follows = Counter(
            "smartmetrics_follows", "Bands moved to a new level a series stayed at between retrains.", ["baseline"],
            registry=r,
        )
        self.owned = Gauge(
            "smartmetrics_owned_series", "Series of the baseline this daemon holds a band for (its shard's share).",
            ["baseline"], registry=r,
        )
        self.shard = Gauge(
            "smartmetrics_shard_info", "This daemon's shard (sharding.shard of sharding.shards); always 1.",
            ["shard", "shards"], registry=r,
        )
        self.alerts_received = Counter(
            "smartmetrics_alerts_received", "Alerts of a baseline in the Alertmanager webhooks received (repeats too).",
            ["baseline"], registry=r,
        )
        self.alerts_recorded = Counter(
            "smartmetrics_alerts_recorded", "Firing periods recorded in the alert history for the first time.",
            ["baseline"], registry=r,
        )
        self.alert_payloads_rejected = Counter(
            "smartmetrics_alert_payloads_rejected", "Webhook requests refused (invalid, too_large).", ["reason"],
            registry=r,
        )
        self.silence_errors = Counter(
            "smartmetrics_silence_sync_errors", "Reads of Alertmanager's silences that failed (feedback.silences_as_noise).",
            registry=r,
        )
        self.feedback_adjustments = Gauge(
            "smartmetrics_feedback_adjustments", "Series whose band feedback widened at the last retrain.",
            ["baseline"], registry=r,
        )
        self.calendar_event = Gauge(
            "smartmetrics_calendar_event_active",
            "1 while a calendar event of the baseline lasts (holiday, maintenance, expected_change), else 0; "
            "a PromQL event as its expr last read (every minute).",
            ["baseline", "event", "kind"], registry=r,
        )
        self.ready = Gauge("smartmetrics_ready", "1 once stored baselines are loaded or a fit finished.", registry=r)
        self.remote_write_samples = Counter(
            "smartmetrics_remote_write_samples", "Band samples the remote-write receiver accepted.",
            registry=r,
        )
        self.remote_write_failed = Counter(
            "smartmetrics_remote_write_samples_failed",
            "Band samples not delivered: refused (4xx), or the receiver failing after retries.", registry=r,
        )
        self.remote_write_requests = Counter(
            "smartmetrics_remote_write_requests",
            "Remote-write requests by HTTP status code (error: no answer).",
            ["code"], registry=r,
        )
        self.remote_write_last_success = Gauge(
            "smartmetrics_remote_write_last_success_timestamp_seconds",
            "Unix time of the last push whose every sample the receiver accepted.", registry=r,
        )

    def set_calendar(self, events: Mapping[str, Iterable[tuple[str, str, bool]]]) -> None:
        """The calendar events of every baseline now, (event, kind, on) by baseline (`settings.events_at`);
        events no longer configured disappear."""
        wanted = {(alias, name, kind): on for alias, found in events.items() for name, kind, on in found}
        for labels in list(self.calendar_event._metrics):
            if labels not in wanted:
                self.calendar_event.remove(*labels)
        for labels, on in wanted.items():
            self.calendar_event.labels(*labels).set(1.0 if on else 0.0)

    def set_series(self, baseline: str, kinds: Tally[tuple[str, str]]) -> None:
        """Replace the baseline's series counts by (curve_type, model)."""
        for labels in list(self.series._metrics):  # drop combinations that no longer exist
            if labels[0] == baseline:
                self.series.remove(*labels)
        for (curve_type, model), count in kinds.items():
            self.series.labels(baseline, curve_type, model).set(count)

    def start_counters(self, baseline: str, source: str) -> None:
        """Create the baseline's counters at 0 (a counter first seen at 1 hides that increase from
        `rate()`); the result and reason labels known in advance only."""
        for result in ("ok", "failed"):
            self.fits.labels(baseline, result)
        self.source_errors.labels(source, baseline)
        self.releases.labels(baseline)
        self.follows.labels(baseline)
        self.fit_duration.labels(baseline)
        self.alerts_received.labels(baseline)
        self.alerts_recorded.labels(baseline)

    def restore(self, state: BaselineState) -> None:
        """The per-baseline gauges as the stored state implies them, after a restart (the last retrain
        time only if it fitted any series, as a retrain sets it)."""
        if state.series:
            self.last_success.labels(state.alias).set(state.fitted_at)
        self.set_series(state.alias, series_kinds(state.series))
        self.settling.labels(state.alias).set(settling_count(state.series))
        self.feedback_adjustments.labels(state.alias).set(adjusted_count(state.series))

    def record_push(self, result: PushResult, started: float) -> None:
        """Count one remote-write push that started at `started` (Unix seconds)."""
        self.remote_write_samples.inc(result.sent)
        self.remote_write_failed.inc(result.failed)
        for code, count in result.codes.items():
            self.remote_write_requests.labels(code).inc(count)
        if result.failed == 0 and result.error is None:
            self.remote_write_last_success.set(started)
