"""The band exporter: values at 'now' interpolated from stored tables, labelled as DESIGN.md says."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from smartmetrics.adapters.exporter import BandCollector, Snapshot
from smartmetrics.engine.state import BaselineState, SeriesBand

T0 = 1_700_000_000


def band(labels: dict[str, str], start: int = T0, n: int = 4, step: int = 60, base: float = 10.0,
         stuck_after: object = None, sustained: object = None) -> SeriesBand:
    y = base + np.arange(n, dtype=float)
    training = {"stuck_after": stuck_after, "sustained": sustained}
    meta = {"training": {k: v for k, v in training.items() if v is not None}}
    return SeriesBand(labels, start, step, y, y - 1, y + 2, meta=meta)


def limits(lower: object = None, upper: object = None, window: object = 3600) -> dict:
    return {"window": window, "lower": lower, "upper": upper}


def registry_for(states: dict[str, BaselineState], now: float) -> CollectorRegistry:
    snapshot = Snapshot(states)
    registry = CollectorRegistry()
    registry.register(BandCollector(lambda: snapshot, clock=lambda: now))
    return registry


def test_exports_interpolated_band_with_baseline_label() -> None:
    states = {"qps": BaselineState("qps", T0, (band({"model": "a", "tenant": "t1"}),))}
    registry = registry_for(states, now=T0 + 90)  # halfway between points 1 and 2
    labels = {"baseline": "qps", "model": "a", "tenant": "t1"}
    assert registry.get_sample_value("smartmetrics_yhat", labels) == pytest.approx(11.5)
    assert registry.get_sample_value("smartmetrics_yhat_lower", labels) == pytest.approx(10.5)
    assert registry.get_sample_value("smartmetrics_yhat_upper", labels) == pytest.approx(13.5)


def test_series_whose_forecast_ran_out_is_not_exported() -> None:
    states = {
        "qps": BaselineState(
            "qps", T0, (band({"model": "old"}, start=T0 - 3600), band({"model": "fresh"}, start=T0 - 60))
        )
    }
    registry = registry_for(states, now=T0)
    assert registry.get_sample_value("smartmetrics_yhat", {"baseline": "qps", "model": "fresh"}) == 11.0
    assert registry.get_sample_value("smartmetrics_yhat", {"baseline": "qps", "model": "old"}) is None


def test_not_yet_started_and_gap_points_are_not_exported() -> None:
    gap = band({"model": "gap"})
    gap.upper[1] = np.nan
    states = {"qps": BaselineState("qps", T0, (band({"model": "future"}, start=T0 + 600), gap))}
    registry = registry_for(states, now=T0 + 60)
    assert registry.get_sample_value("smartmetrics_yhat", {"baseline": "qps", "model": "future"}) is None
    assert registry.get_sample_value("smartmetrics_yhat", {"baseline": "qps", "model": "gap"}) is None
    registry = registry_for(states, now=T0 + 120)  # exactly on point 2: its neighbour's gap is irrelevant
    assert registry.get_sample_value("smartmetrics_yhat_upper", {"baseline": "qps", "model": "gap"}) == 14.0


def test_colliding_baseline_label_is_renamed() -> None:
    states = {"qps": BaselineState("qps", T0, (band({"baseline": "theirs", "job": "x"}),))}
    registry = registry_for(states, now=T0)
    assert registry.get_sample_value("smartmetrics_yhat", {"baseline": "qps", "exported_baseline": "theirs", "job": "x"}) == 10.0


def test_exposition_text_has_the_three_gauges_for_several_baselines() -> None:
    states = {
        "qps": BaselineState("qps", T0, tuple(band({"model": m}) for m in "abc")),
        "lat": BaselineState("lat", T0, (band({"model": "a"}, n=1),)),
    }
    text = generate_latest(registry_for(states, now=T0)).decode()
    for name in ("smartmetrics_yhat", "smartmetrics_yhat_lower", "smartmetrics_yhat_upper"):
        assert f"# TYPE {name} gauge" in text
        assert text.count(f"\n{name}{{") == 4
    assert 'smartmetrics_yhat{baseline="lat",model="a"} 10.0' in text


def test_remaining_hours_and_count() -> None:
    snapshot = Snapshot({"qps": BaselineState("qps", T0, (band({"m": "a"}, n=121), band({"m": "b"}, n=61)))})
    assert snapshot.series_count() == 2
    assert snapshot.remaining_hours(T0) == {"qps": pytest.approx(1.0)}


def test_stuck_after_is_exported_only_for_series_with_stuck_detection_and_a_current_band() -> None:
    series = (
        band({"model": "busy", "baseline": "theirs"}, stuck_after=1800),
        band({"model": "ratio"}, stuck_after=90.5),
        band({"model": "sparse"}, stuck_after=0),
        band({"model": "old"}),
        band({"model": "expired"}, start=T0 - 3600, stuck_after=600),
        band({"model": "future"}, start=T0 + 600, stuck_after=600),
        *(band({"model": f"bad{i}"}, stuck_after=v) for i, v in enumerate([True, "1800", -60, float("nan"), [1]])),
    )
    registry = registry_for({"qps": BaselineState("qps", T0, series)}, now=T0 + 60)
    name = "smartmetrics_stuck_after_seconds"
    assert registry.get_sample_value(name, {"baseline": "qps", "exported_baseline": "theirs", "model": "busy"}) == 1800
    assert registry.get_sample_value(name, {"baseline": "qps", "model": "ratio"}) == 90.5
    exported = [s for family in registry.collect() if family.name == name for s in family.samples]
    assert sorted(s.labels["model"] for s in exported) == ["busy", "ratio"]
    yhat = {tuple(sorted(s.labels.items())) for f in registry.collect() if f.name == "smartmetrics_yhat"
            for s in f.samples}
    assert {tuple(sorted(s.labels.items())) for s in exported} <= yhat  # the same label sets as the band


def test_stuck_after_family_has_help_and_type_even_when_empty() -> None:
    text = Snapshot({"qps": BaselineState("qps", T0, (band({"m": "a"}),))}).render_text(T0)
    assert "# TYPE smartmetrics_stuck_after_seconds gauge" in text
    assert "# HELP smartmetrics_stuck_after_seconds Seconds without any change" in text
    assert "\nsmartmetrics_stuck_after_seconds{" not in text


def test_mean_limits_are_exported_only_where_stored_valid_and_with_a_current_band() -> None:
    series = (
        band({"model": "both", "baseline": "theirs"}, sustained=limits(0.25, 4)),
        band({"model": "sparse"}, sustained=limits(None, 1.5)),
        band({"model": "low"}, sustained=limits(2, None), stuck_after=600),
        band({"model": "none"}, sustained=None, stuck_after=600),
        band({"model": "expired"}, start=T0 - 3600, sustained=limits(1, 2)),
        band({"model": "future"}, start=T0 + 600, sustained=limits(1, 2)),
        band({"model": "nan_lower"}, sustained=limits(float("nan"), 3)),
        band({"model": "text_upper"}, sustained=limits(1, "3")),
        *(band({"model": f"bad{i}"}, sustained=v) for i, v in enumerate([
            limits(None, None), limits(True, False), limits(float("-inf"), float("inf")),
            limits(1, 2, window=0), limits(1, 2, window=None), limits(1, 2, window="1h"),
            limits(3, 2), limits(2, 2), [1, 2], "x", {"window": 3600}])),
    )
    registry = registry_for({"qps": BaselineState("qps", T0, series)}, now=T0 + 60)

    def exported(name: str) -> dict[str, float]:
        return {s.labels["model"]: s.value for f in registry.collect() if f.name == name for s in f.samples}

    assert exported("smartmetrics_mean_upper") == {"both": 4, "sparse": 1.5, "nan_lower": 3}
    assert exported("smartmetrics_mean_lower") == {"both": 0.25, "low": 2, "text_upper": 1}
    assert set(exported("smartmetrics_stuck_after_seconds")) == {"low", "none"}
    labels = {"baseline": "qps", "exported_baseline": "theirs", "model": "both"}
    assert registry.get_sample_value("smartmetrics_mean_upper", labels) == 4


def test_mean_limit_families_have_help_and_type_even_when_empty() -> None:
    text = Snapshot({"qps": BaselineState("qps", T0, (band({"m": "a"}),))}).render_text(T0)
    for name in ("smartmetrics_mean_upper", "smartmetrics_mean_lower"):
        assert f"# TYPE {name} gauge" in text and f"\n{name}{{" not in text
        assert f"# HELP {name} " in text and "mean over its trailing window" in text


def test_fast_text_rendering_matches_the_collector() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    states = {
        "qps": BaselineState("qps", T0, (band({"model": 'q"uo\\te\n', "z": "1"}, stuck_after=1200,
                                              sustained=limits(0.1, 7.25)),
                                         band({"model": "b"}, start=T0 + 600, stuck_after=300,
                                              sustained=limits(1, 2)),
                                         band({"model": "c"}, stuck_after=0, sustained=limits(None, 1e-7)))),
        "lat": BaselineState("lat", T0, (band({"baseline": "x"}, n=2, stuck_after=3600),)),
    }

    def samples(text: str) -> set[tuple]:
        return {
            (s.name, tuple(sorted(s.labels.items())), s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    now = T0 + 30
    fast = Snapshot(states).render_text(now)
    slow = generate_latest(registry_for(states, now)).decode()
    assert samples(fast) == samples(slow) and len(samples(fast)) == 3 * 3 + 2 + 2 + 1
    assert {s[0] for s in samples(fast)} >= {"smartmetrics_stuck_after_seconds", "smartmetrics_mean_upper",
                                             "smartmetrics_mean_lower"}


def test_label_names_the_exposition_format_forbids_are_sanitised_never_breaking_metrics() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    odd = band({"service.name": "api", "service_name": "other", "1st": "x", "k8s-pod": 'a"b\n'})
    fine = band({"job": "ok"})
    states = {"qps": BaselineState("qps", T0, (odd, fine))}
    text = Snapshot(states).render_text(T0 + 60)
    families = {f.name: f for f in text_string_to_metric_families(text)}  # raises on an invalid name
    labels = [s.labels for s in families["smartmetrics_yhat"].samples]
    assert {"baseline": "qps", "service_name": "api", "exported_service_name": "other", "_1st": "x",
            "k8s_pod": 'a"b\n'} in labels
    assert {"baseline": "qps", "job": "ok"} in labels  # the other series of the baseline are untouched
    assert generate_latest(registry_for(states, T0 + 60))  # the collector path renders as well


# --- forecast ahead (issue 25: autoscaling) -----------------------------------------------------

AHEAD_FAMILIES = ("smartmetrics_yhat_ahead", "smartmetrics_yhat_upper_ahead")


def ahead_registry(states: dict[str, BaselineState], ahead: dict, now: float) -> CollectorRegistry:
    snapshot = Snapshot(states, ahead=ahead)
    registry = CollectorRegistry()
    registry.register(BandCollector(lambda: snapshot, clock=lambda: now))
    return registry


def test_ahead_values_are_the_table_interpolated_at_now_plus_ahead() -> None:
    series = (band({"m": "a"}, n=121), band({"m": "b"}, n=61, base=50.0))
    states = {"qps": BaselineState("qps", T0, series)}
    ahead = {"qps": (("15m", 900.0), ("60m", 3600.0))}
    now = T0 + 90
    registry = ahead_registry(states, ahead, now)
    at = {(labels["m"], offset): (y, up) for offset in (900, 3600)
          for labels, y, _, up in Snapshot(states).values_at(now + offset)}
    for m, spelling, offset in (("a", "15m", 900), ("a", "60m", 3600), ("b", "15m", 900)):
        labels = {"baseline": "qps", "m": m, "ahead": spelling}
        assert registry.get_sample_value("smartmetrics_yhat_ahead", labels) == pytest.approx(at[m, offset][0])
        assert registry.get_sample_value("smartmetrics_yhat_upper_ahead", labels) == pytest.approx(at[m, offset][1])
    assert registry.get_sample_value("smartmetrics_yhat_ahead", {"baseline": "qps", "m": "a", "ahead": "15m"}) \
        == pytest.approx(10.0 + 16.5)  # point 16.5 of the table: 990 s after its start
    # b's table ends an hour after T0: 60m ahead of T0 + 90 is beyond it, so not a stale guess
    assert registry.get_sample_value("smartmetrics_yhat_ahead", {"baseline": "qps", "m": "b", "ahead": "60m"}) is None
    assert registry.get_sample_value("smartmetrics_yhat", {"baseline": "qps", "m": "b"}) is not None


def test_ahead_is_absent_beyond_the_table_and_at_a_gap() -> None:
    gap = band({"m": "gap"}, n=121)
    gap.yhat[16] = np.nan
    states = {"qps": BaselineState("qps", T0, (band({"m": "short"}), gap))}
    registry = ahead_registry(states, {"qps": (("15m", 900.0),)}, T0 + 60)
    assert registry.get_sample_value("smartmetrics_yhat", {"baseline": "qps", "m": "short"}) == 11.0
    assert registry.get_sample_value("smartmetrics_yhat_ahead", {"baseline": "qps", "m": "short", "ahead": "15m"}) \
        is None
    assert registry.get_sample_value("smartmetrics_yhat_ahead", {"baseline": "qps", "m": "gap", "ahead": "15m"}) \
        is None


def test_ahead_label_keeps_the_configured_spelling_and_a_series_own_ahead_moves_aside() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    states = {"qps": BaselineState("qps", T0, (band({"m": "a", "ahead": "theirs"}, n=121),))}
    text = Snapshot(states, ahead={"qps": (("90m", 5400.0), ("1h30s", 3630.0))}).render_text(T0)
    samples = [s for f in text_string_to_metric_families(text) if f.name == "smartmetrics_yhat_ahead"
               for s in f.samples]
    assert sorted(s.labels["ahead"] for s in samples) == ["1h30s", "90m"]
    assert all(s.labels["exported_ahead"] == "theirs" for s in samples)
    assert 'smartmetrics_yhat_upper_ahead{baseline="qps",m="a",exported_ahead="theirs",ahead="90m"} ' in text


def test_baselines_without_ahead_render_as_before() -> None:
    states = {"qps": BaselineState("qps", T0, (band({"m": "a"}, n=121),)),
              "lat": BaselineState("lat", T0, (band({"m": "b"}, n=121),))}
    before = Snapshot(states).render_text(T0 + 60)
    assert Snapshot(states, ahead={}).render_text(T0 + 60) == before
    assert Snapshot(states, ahead={"qps": ()}).render_text(T0 + 60) == before
    assert not any(name in before for name in AHEAD_FAMILIES)
    registry = ahead_registry(states, {"qps": (("15m", 900.0),)}, T0 + 60)
    ahead_samples = [s for f in registry.collect() if f.name in AHEAD_FAMILIES for s in f.samples]
    assert {s.labels["baseline"] for s in ahead_samples} == {"qps"} and len(ahead_samples) == 2
    without = {f.name for f in registry_for(states, T0 + 60).collect()}
    assert not without & set(AHEAD_FAMILIES)


def test_fast_text_rendering_matches_the_collector_with_ahead() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    states = {"qps": BaselineState("qps", T0, (band({"model": 'q"uo\\te\n'}, n=121), band({"model": "b"}))),
              "lat": BaselineState("lat", T0, (band({"baseline": "x"}, n=121),))}
    ahead = {"qps": (("15m", 900.0),), "lat": (("15m", 900.0), ("30m", 1800.0))}

    def samples(text: str) -> set[tuple]:
        return {(s.name, tuple(sorted(s.labels.items())), s.value)
                for family in text_string_to_metric_families(text) for s in family.samples}

    now = T0 + 30
    fast = samples(Snapshot(states, ahead=ahead).render_text(now))
    slow = samples(generate_latest(ahead_registry(states, ahead, now)).decode())
    assert fast == slow
    assert sum(1 for s in fast if s[0] in AHEAD_FAMILIES) == 2 * 3  # qps/a 15m, lat 15m and 30m; not qps/b


def test_live_events_withdraw_or_widen_the_current_band_within_its_range_and_leave_ahead_alone() -> None:
    from smartmetrics.settings import OPEN_END

    bounded = replace(band({"i": "a"}, n=60), meta={"training": {"range": [10.0, None], "stuck_after": 600}})
    state = BaselineState("q", T0, (bounded, band({"i": "b"}, n=60)))
    plain = Snapshot({"q": state}, ahead={"q": [("15m", 900)]})
    now = T0 + 120
    usual = {x["i"]: v for x, *v in plain.values_at(now)}
    ahead = list(plain.ahead_at(now))

    down = plain.with_events({"q": ((), ((0, OPEN_END, 3.0, "down"),))})
    widened = {x["i"]: v for x, *v in down.values_at(now)}
    assert widened["b"] == [usual["b"][0], usual["b"][0] - 3.0, usual["b"][2]]  # lower 1 below yhat, now 3
    assert widened["a"][1] == 10.0  # 9 would be below the natural range
    assert list(down.ahead_at(now)) == ahead and [v for x, *v in plain.values_at(now)] == list(usual.values())

    off = plain.with_events({"q": (((0, OPEN_END),), ())})
    assert list(off.values_at(now)) == [] and list(off.constants_at(now)) == []
    assert "smartmetrics_yhat{" not in off.render_text(now) and "smartmetrics_stuck_after_seconds{" not in off.render_text(now)
    assert list(off.ahead_at(now)) == ahead  # how long a PromQL event lasts is not known: the forecast ahead stays


def test_label_text_worked_out_per_set_of_names_is_the_exported_labels_rendered() -> None:
    from smartmetrics.adapters.exporter import _export_text, export_labels, render_label_text

    odd = [{"__name__": "up", "job": "a%s"}, {"baseline": "x", "exported_baseline": "y", "a.b": "1", "a_b": "2"},
           {"k": 'q"uo\\te\n'}, {}, {"1st": "%d", "ahead": "z"}, {"job": "b%s", "__name__": "up"}]
    for labels in odd + odd:  # the second time from the cached template
        assert _export_text("q%s", labels) == render_label_text(export_labels("q%s", labels))


def test_the_range_clip_at_each_read_serves_what_clipping_the_whole_tables_did_with_live_events_too() -> None:
    """The natural-range clip is applied to the two table values a scrape interpolates between, not to
    whole tables up front; a live event's widened edges are clipped after, in float64, as before."""
    from smartmetrics.engine.ranges import clip_values
    from smartmetrics.engine.state import stack_columns
    from smartmetrics.settings import OPEN_END

    rng = np.random.default_rng(7)
    series = []
    for i, bounds in enumerate([[0.1, None], [None, 10.7], [0.3, 10.3], None]):  # not float32-exact bounds
        y = rng.uniform(-1.0, 12.0, 90)
        meta = {"training": {"range": bounds}} if bounds else {}
        series.append(SeriesBand({"i": str(i)}, T0, 60, y, y - rng.uniform(0, 2, 90), y + rng.uniform(0, 2, 90),
                                 meta=meta))
    values = stack_columns(tuple(series), min_width=1)  # what the exporter served from until now
    for j, b in enumerate(series):
        if b.meta:
            values[:, j] = clip_values(values[:, j], *b.meta["training"]["range"])
    clipped = tuple(replace(b, yhat=values[0, j], lower=values[1, j], upper=values[2, j]) for j, b in enumerate(series))
    ahead = {"q": [("15m", 900.0)]}
    events = {"q": ((), ((0, OPEN_END, 2.5, "both"),))}
    served, expected = (Snapshot({"q": BaselineState("q", T0, tuple(s))}, ahead=ahead) for s in (series, clipped))
    for now in T0 + np.array([0, 30, 59.5, 60, 1234.5, 3600, 4400.25]):
        assert served.render_text(now) == expected.render_text(now)
        assert list(served.ahead_at(now)) == list(expected.ahead_at(now))
        assert served.with_events(events).render_text(now) == expected.with_events(events).render_text(now)
    widened = [{labels["i"]: (lower, upper) for labels, _, lower, upper in served.with_events(events).values_at(now)}
               for now in T0 + 60 * np.arange(90)]
    lowest, highest = min(e["0"][0] for e in widened), max(e["1"][1] for e in widened)
    assert (lowest, highest) == (0.1, 10.7)  # widened beyond its range: the bound itself, not its float32 neighbour
