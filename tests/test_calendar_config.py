"""Calendar config (issue 25): time zones, holidays and maintenance windows, validated by path and
turned into the fit's settings."""

from __future__ import annotations

from datetime import date

import pytest

from smartmetrics.config import ConfigError, parse_config
from smartmetrics.settings import EPOCH_DAY, cron_windows, fit_fingerprint, fit_settings, zone_transitions

SOURCES = {"prom": {"url": "http://localhost:9090"}}


def baseline(**fields: object):
    return parse_config({"sources": SOURCES, "baselines": {"qps": {"expr": "up", **fields}}}).baselines["qps"]


def problems(**fields: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        baseline(**fields)
    return info.value.problems


def test_a_time_zone_is_an_iana_name_and_utc_by_default() -> None:
    assert baseline().timezone == "UTC" and fit_settings(baseline()).local_time == ()
    assert fit_settings(baseline(timezone="Europe/Berlin")).local_time == zone_transitions("Europe/Berlin")
    for bad in ("Europe/Berln", "CEST+2", "../etc/passwd"):
        assert problems(timezone=bad) == [f"baselines.qps.timezone: unknown time zone {bad!r}: expected an IANA "
                                          "name such as Europe/Berlin or UTC"]


def test_a_time_zone_refits_and_the_default_keeps_the_old_fingerprint() -> None:
    plain, utc, berlin = baseline(), baseline(timezone="UTC"), baseline(timezone="Europe/Berlin")
    assert fit_fingerprint(plain) == fit_fingerprint(utc) != fit_fingerprint(berlin)
    assert fit_fingerprint(plain) == "70bf8c045fb0fa4c"  # as before time zones: no refit on upgrade


def test_holidays_come_from_the_country_calendar_and_extra_dates() -> None:
    settings = fit_settings(baseline(calendar={"holidays": {"country": "US", "subdiv": "CA",
                                                            "extra": ["2026-12-24"]}}))
    days = {str(date.fromordinal(EPOCH_DAY + d)) for d in settings.holidays}
    assert {"2026-12-24", "2026-12-25", "2026-07-03", "2026-03-31"} <= days  # Cesar Chavez Day: California's
    assert "2026-03-31" not in {str(date.fromordinal(EPOCH_DAY + d))
                                for d in fit_settings(baseline(calendar={"holidays": {"country": "US"}})).holidays}


@pytest.mark.parametrize(("holidays", "message"), [
    ({"country": "XX"}, "baselines.qps.calendar.holidays: country 'XX': not a country the holidays package knows"),
    ({"country": "US", "subdiv": "ZZ"}, "baselines.qps.calendar.holidays: subdiv 'ZZ': not a subdivision of US (one of AK, AL,"),
    ({"subdiv": "CA"}, "baselines.qps.calendar.holidays: subdiv 'CA' needs a country"),
    ({"extra": ["2026-13-01"]}, "baselines.qps.calendar.holidays.extra.0: Input should be a valid date"),
    ({"country": "US", "extras": []}, "baselines.qps.calendar.holidays.extras: unknown key"),
])
def test_a_bad_holiday_calendar_is_named_by_its_path(holidays: dict, message: str) -> None:
    found = problems(calendar={"holidays": holidays})
    assert len(found) == 1 and found[0].startswith(message), found


def test_the_top_level_calendar_is_every_baseline_s_default() -> None:
    config = parse_config({"sources": SOURCES, "calendar": {"holidays": {"country": "DE"}},
                           "baselines": {"a": {"expr": "up"},
                                         "b": {"expr": "up", "calendar": {"holidays": {"country": "FR"}}}}})
    assert config.baselines["a"].calendar.holidays.country == "DE"
    assert config.baselines["b"].calendar.holidays.country == "FR"
    assert fit_fingerprint(config.baselines["a"]) != fit_fingerprint(baseline())  # a calendar refits


def test_classify_shows_the_holidays_a_fit_saw() -> None:
    import io

    import numpy as np

    from smartmetrics.app.classify_cli import Row, band_coverage, render_table
    from smartmetrics.engine.classify import classify_series
    from smartmetrics.engine.series import Series

    t = 1_704_844_800 - 14 * 86400 + 300 * np.arange(14 * 288, dtype=np.int64)
    series = Series({}, t, 100 + 10 * np.sin(2 * np.pi * t / 86400), 300)
    settings = fit_settings(baseline(calendar={"holidays": {"extra": ["2024-01-01", "2023-06-01"]}}))
    coverage, holidays = band_coverage(series, settings)
    assert coverage["nominal"] > 0.99 and holidays == ("2024-01-01",)
    row = Row("qps", "{}", {}, classify_series(series), coverage, holidays)
    assert row.to_dict()["holidays"] == ["2024-01-01"]
    out = io.StringIO()
    render_table([row], file=out)
    assert "2024-01-01" in out.getvalue()


def test_maintenance_events_become_withdrawn_windows() -> None:
    events = [{"name": "db upgrade", "start": "2026-03-01T02:00:00+01:00", "end": "2026-03-01T04:00:00+01:00"},
              {"name": "naive is utc", "start": "2026-02-01T00:00:00", "end": "2026-02-01T01:00:00"}]
    settings = fit_settings(baseline(calendar={"events": events}))
    assert settings.withdrawn == ((1_769_904_000, 1_769_907_600), (1_772_326_800, 1_772_334_000))
    assert problems(calendar={"events": [{**events[0], "end": "2026-03-01T01:00:00+01:00"}]}) == [
        "baselines.qps.calendar.events.0: event 'db upgrade': end must be after start"]
    assert problems(calendar={"events": [{**events[0], "kind": "party"}]})[0].startswith(
        "baselines.qps.calendar.events.0.kind: Input should be 'maintenance'")


def test_an_expected_change_widens_by_its_factor_on_its_side() -> None:
    promo = {"name": "promo", "kind": "expected_change", "start": "2026-03-06T00:00:00Z", "end": "2026-03-07T00:00:00Z"}
    settings = fit_settings(baseline(calendar={"events": [
        promo, {**promo, "name": "launch", "widen": 3, "direction": "up"}]}))
    assert settings.widened == ((1_772_755_200, 1_772_841_600, 2.0, "both"), (1_772_755_200, 1_772_841_600, 3.0, "up"))
    assert settings.withdrawn == ()
    assert problems(calendar={"events": [{**promo, "widen": 0.5}]}) == [
        "baselines.qps.calendar.events.0.widen: Input should be greater than 1"]
    assert problems(calendar={"events": [{**promo, "direction": "sideways"}]}) == [
        "baselines.qps.calendar.events.0.direction: Input should be 'up', 'down' or 'both', got 'sideways'"]
    assert problems(calendar={"events": [{**promo, "kind": "maintenance", "widen": 2}]}) == [
        "baselines.qps.calendar.events.0: event 'promo': widen is only for kind expected_change"]
    assert problems(calendar={"events": [promo, promo]}) == [
        "baselines.qps.calendar.events: event names must differ (the dashboards and metrics tell them apart): promo"]


def test_an_event_is_a_window_a_cron_with_a_duration_or_an_expr() -> None:
    weekly = {"name": "backup", "cron": "0 2 * * 0", "duration": "2h"}
    assert problems(calendar={"events": [{**weekly, "start": "2026-03-06T00:00:00Z"}]}) == [
        "baselines.qps.calendar.events.0: event 'backup': give exactly one of start (with end), cron (with duration) "
        "or expr (given: start, cron)"]
    assert problems(calendar={"events": [{"name": "backup", "cron": "0 2 * * 0"}]}) == [
        "baselines.qps.calendar.events.0: event 'backup': cron needs duration"]
    assert problems(calendar={"events": [{"name": "x", "start": "2026-03-06T00:00:00Z"}]}) == [
        "baselines.qps.calendar.events.0: event 'x': start needs end"]
    assert problems(calendar={"events": [{**weekly, "cron": "0 2 * * 9"}]})[0].startswith(
        'baselines.qps.calendar.events.0.cron: invalid cron expression "0 2 * * 9"')
    assert problems(calendar={"events": [{"name": "deploy", "expr": "sum(rate(x[5m]"}]})[0].startswith(
        "baselines.qps.calendar.events.0.expr: ")
    b = baseline(timezone="Europe/Berlin", calendar={"events": [weekly, {"name": "freeze", "expr": "freeze_active"}]})
    assert fit_settings(b).withdrawn == ()  # a cron has no windows without a span, an expr none unobserved
    march = (1_772_323_200, 1_772_323_200 + 14 * 86400)  # 2026-03-01 (a Sunday) 00:00 UTC, two weeks
    settings = fit_settings(b, span=march, observed={"freeze": ((100, 200),)})
    assert settings.withdrawn == ((100, 200), (1_772_326_800, 1_772_334_000), (1_772_931_600, 1_772_938_800))  # Sundays 02:00-04:00 Berlin (01:00 UTC)


def test_a_walk_forward_fit_gets_the_cron_windows_of_each_training_window_and_horizon() -> None:
    import numpy as np

    from smartmetrics.engine.series import Series
    from smartmetrics.settings import baseline_fit

    b = baseline(step="1h", calendar={"events": [{"name": "nightly", "cron": "0 1 * * *", "duration": "2h"}]})
    t = 1_772_323_200 + 3600 * np.arange(3 * 24, dtype=np.int64)
    fitted = baseline_fit(b)(Series({}, t, 10 + np.sin(np.arange(len(t)) / 3.8), 3600), 86400)
    gone = np.isnan(fitted.yhat)
    assert ((fitted.timestamps[gone] % 86400) // 3600).tolist() == [1, 2]
    assert fitted.training["withdrawn"] == [[int(t[-1]) + 3600 * 2, int(t[-1]) + 3600 * 4]]


def test_a_promql_event_is_on_where_any_of_its_series_is_non_zero() -> None:
    import numpy as np

    from smartmetrics.adapters.markers import fetch_event_windows
    from smartmetrics.adapters.source import FetchResult
    from smartmetrics.engine.series import Series

    config = parse_config({"sources": SOURCES, "baselines": {"qps": {"expr": "up", "step": "1m", "calendar": {
        "events": [{"name": "freeze", "expr": "freeze_active", "kind": "expected_change"}]}}}})
    asked = []

    def fetch(cfg, alias, end=None, **_):
        asked.append((cfg.baselines[alias].expr, cfg.baselines[alias].history, end))
        t = np.arange(10, dtype=np.int64) * 60
        return FetchResult(alias, [Series({"a": "1"}, t, np.array([0, 1, 1, 0, 0, 0, 0, 0, 2, np.nan]), 60),
                                   Series({"a": "2"}, t, np.array([0, 0, 0, 5, 0, 0, 0, 0, 0, 0.0]), 60)], 0, 1, 0, 0.0)

    assert fetch_event_windows(config, "qps", 0, 600, fetch) == {"freeze": ((60, 240), (480, 540))}
    assert asked == [("freeze_active", 600, 600)]


def test_the_daemon_exports_which_calendar_events_are_on() -> None:
    from smartmetrics.app.selfmetrics import SelfMetrics
    from smartmetrics.settings import events_at

    b = baseline(timezone="Europe/Berlin", calendar={"holidays": {"country": "DE"}, "events": [
        {"name": "backup", "cron": "0 2 * * 0", "duration": "2h"},
        {"name": "sale", "kind": "expected_change", "start": "2026-12-24T00:00:00+01:00", "end": "2026-12-25T00:00:00+01:00"},
        {"name": "freeze", "expr": "freeze_on"}]})
    christmas_night = 1_798_153_200  # 2026-12-25 00:00 Berlin (23:00 UTC the day before): a holiday, the sale over
    assert events_at(b, christmas_night) == [("backup", "maintenance", False), ("sale", "expected_change", False),
                                             ("freeze", "maintenance", False), ("holiday", "holiday", True)]
    assert events_at(b, christmas_night - 1)[1:] == [("sale", "expected_change", True), ("freeze", "maintenance", False),
                                                     ("holiday", "holiday", False)]
    assert events_at(b, christmas_night, on={"freeze"})[2] == ("freeze", "maintenance", True)  # as its expr last read
    assert events_at(b, 1_767_488_400)[0] == ("backup", "maintenance", True)  # Sunday 2026-01-04, 02:00 in Berlin
    metrics = SelfMetrics()
    metrics.set_calendar({"qps": events_at(b, christmas_night)})
    get = metrics.registry.get_sample_value
    assert get("smartmetrics_calendar_event_active", {"baseline": "qps", "event": "holiday", "kind": "holiday"}) == 1
    assert get("smartmetrics_calendar_event_active", {"baseline": "qps", "event": "sale", "kind": "expected_change"}) == 0
    metrics.set_calendar({"qps": [("holiday", "holiday", False)]})  # a reload dropped the events
    assert get("smartmetrics_calendar_event_active", {"baseline": "qps", "event": "sale", "kind": "expected_change"}) is None


def test_cron_windows_cross_a_fall_back_night_without_repeating_a_run() -> None:
    """APScheduler 3 answers a search inside the repeated hour with the same run again: each zone's
    fall-back night must still give a finite list of strictly increasing runs."""
    for cron, zone, start in (("0 * * * *", "Europe/Berlin", 1_729_980_000),  # 2024-10-27
                              ("30 1 * * 0", "America/New_York", 1_730_600_000),  # 2024-11-03
                              ("*/10 * * * *", "Europe/Berlin", 1_729_980_000)):
        runs = [s for s, _ in cron_windows(cron, 600, zone, start, start + 2 * 86400)]
        assert runs and all(b > a for a, b in zip(runs, runs[1:]))
        assert len(runs) <= 2 * 86400 // 600 + 6
