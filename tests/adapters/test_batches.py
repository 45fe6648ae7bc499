"""Series batches (`adapters.batches`): pure planning, and against a real Prometheus the same series and
values as one request, with label values full of regex metacharacters, series without the batching
label, a series that stopped early, a shard asking only for its own series; and a failed batch."""

from __future__ import annotations

import json
import re
import time

import httpx
import numpy as np
import pytest
import re2

from smartmetrics.adapters.batches import (
    Selector,
    escape_re2,
    listed_keys,
    parse_selector,
    pick_label,
    plan_batches,
    plan_requests,
    select_series,
)
from smartmetrics.adapters.source import fetch_baseline, parse_matrix
from smartmetrics.app.promlocal import LocalPrometheus, MetricSeries
from smartmetrics.config import parse_config
from smartmetrics.engine.series import align_down

pytestmark = pytest.mark.prometheus

ODD = ["a.b", "aXb", "a|b", "a+b", "(a", "a)", "[x]", "{y}", "^c$", "d*", "e?", 'q"uote', "back\\slash",
       "sp ace", "ü-ni", "a\nb"]
"""`id` values a regex would misread if they were not escaped (and `aXb`, which `a.b` unescaped matches)."""


# --- pure -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("expr", ["up", 'up{job="api"}', '{__name__="up", job=~"a|b"}', 'up{a!="", b!~"x.*"}',
                                  "up # a comment"])
def test_plain_selectors_are_recognised_and_render_back_to_the_same_selector(expr):
    selector = parse_selector(expr)
    assert selector is not None
    named = (("__name__", "=", selector.name),) if selector.name else ()
    assert parse_selector(selector.render()) == Selector(None, named + selector.matchers)


@pytest.mark.parametrize("expr", ["rate(up[5m])", "sum by (job) (rate(up[5m]))", "up offset 5m", "up @ 100",
                                  "up[5m]", "up + 1", "(up)", "-up", 'up{a="b" or c="d"}', "vector(1)", "1",
                                  "sum(up)", "up and on() vector(1)", "topk(3, up)"])
def test_anything_else_is_not_a_plain_selector(expr):
    assert parse_selector(expr) is None


@pytest.mark.parametrize("value", ODD + ["", "plain", "x" * 50])
def test_an_escaped_value_matches_itself_and_nothing_else_in_re2(value):
    pattern = escape_re2(value)
    assert re2.fullmatch(pattern, value)
    assert not any(re2.fullmatch(pattern, other) for other in ODD + ["", "ab", "a", "b"] if other != value)


def test_a_batch_regex_with_an_empty_value_also_matches_the_series_without_the_label():
    values = ["", "a.b", "c|d"]
    pattern = "|".join(escape_re2(v) for v in values)
    assert [v for v in ["", "a.b", "aXb", "c|d", "c", "d"] if re2.fullmatch(pattern, v)] == values


def test_the_label_with_the_smallest_groups_is_picked_and_series_without_it_form_one_group():
    keys = [(("__name__", "m"), ("id", str(i)), ("zone", str(i % 2))) for i in range(6)] + [(("__name__", "m"),)]
    assert pick_label(keys) == "id"  # groups of 1, and the one series without it
    batches = plan_batches(keys, 3)
    assert [b.values for b in batches] == [("", "0", "1"), ("2", "3", "4"), ("5",)]
    assert sum(len(b.keys) for b in batches) == len(keys)


def test_a_group_larger_than_a_batch_is_a_batch_of_its_own():
    keys = [(("a", "x"), ("b", "1")), (("a", "x"), ("b", "2")), (("a", "x"), ("b", "3")), (("a", "y"), ("b", "1"))]
    assert pick_label(keys) == "b"  # groups of at most 2, where a has one of 3
    assert [(b.values, len(b.keys)) for b in plan_batches(keys, 1)] == [(("1",), 2), (("2",), 1), (("3",), 1)]


def test_selection_keeps_this_shards_series_then_the_first_max_series_by_labels():
    listed = [{"__name__": "m", "id": str(i)} for i in (5, 1, 3, 2, 4, 1)]  # the listing may repeat a series
    keys, dropped = select_series(listed_keys(listed), lambda labels: labels["id"] != "2", 3)
    assert [dict(k)["id"] for k in keys] == ["1", "3", "4"] and dropped == 1


def test_a_batch_is_sized_for_every_series_its_query_matches_not_only_this_shards():
    """A shard's batch regex also matches the other shards' series with the same values (and those
    past `max_series`): the request must stay within `max_samples_per_request` with all of them."""
    from smartmetrics.config import Source

    listed = [(("__name__", "m"), ("instance", f"i{i:03d}"), ("method", f"m{j}")) for i in range(100) for j in range(10)]
    own = [key for n, key in enumerate(listed) if n % 4 == 1]  # a quarter of each instance's series
    source = Source(url="http://prom.test", max_samples_per_request=250_000)
    points = 4033
    plan = plan_requests(own, points, source, listed)
    assert sorted(key for b, _ in plan for key in b.keys) == sorted(own)
    for batch, per_request in plan:
        returned = sum(1 for key in listed if dict(key)[batch.label] in batch.values)
        assert batch.matched == returned and returned * min(points, per_request) <= 250_000
    assert plan[0][0].label == "instance" and len(plan) <= 1000 // 61 + 1


def test_a_short_range_still_asks_for_a_bounded_number_of_series_a_batch():
    """An hour at 5 minutes is 13 points a series: 250,000 samples would be a regex of 19,000 values."""
    from smartmetrics.adapters.batches import MAX_BATCH_SERIES
    from smartmetrics.config import Source

    listed = [(("__name__", "m"), ("id", f"{i:05d}")) for i in range(5000)]
    plan = plan_requests(listed, 13, Source(url="http://prom.test"), listed)
    assert max(len(b.values) for b, _ in plan) == MAX_BATCH_SERIES and len(plan) == 5000 // MAX_BATCH_SERIES
    assert sorted(key for b, _ in plan for key in b.keys) == listed


def test_long_label_values_make_smaller_batches_not_a_request_prometheus_refuses():
    from smartmetrics.adapters.batches import MAX_REGEX_BYTES, escape_re2

    listed = [(("__name__", "m"), ("url", f"/api/v{i:05d}/" + "a.b/" * 1000)) for i in range(300)]
    plan = plan_batches(listed, 1000)
    assert len(plan) > 1 and sorted(key for b in plan for key in b.keys) == sorted(listed)
    assert all(len("|".join(escape_re2(v) for v in b.values)) <= MAX_REGEX_BYTES for b in plan)


def test_rendering_quotes_label_names_that_are_not_classic_names():
    selector = parse_selector('{"my.metric","my.label"="x"}')  # Prometheus 3's UTF-8 names
    assert selector.render() == '{__name__="my.metric","my.label"="x"}'
    assert parse_selector(selector.render()) == selector


def test_rendering_quotes_values_as_promql_reads_them():
    selector = Selector("m", (("a", "=", 'x"y\\z\n'),))
    assert parse_selector(selector.render()) == Selector(None, (("__name__", "=", "m"), ("a", "=", 'x"y\\z\n')))


# --- a real Prometheus ----------------------------------------------------------------------------


STEP = 60


class Recorder:
    """A transport that forwards every request to the real server and keeps (request, answer)."""

    def __init__(self) -> None:
        self.seen: list[tuple[httpx.Request, bytes]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        async with httpx.AsyncClient() as client:
            response = await client.send(request)
        self.seen.append((request, response.content))
        return httpx.Response(response.status_code, content=response.content)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def requests(self, path: str) -> list[httpx.Request]:
        return [request for request, _ in self.seen if request.url.path == path]

    def matrices(self) -> list[tuple[str, object]]:
        """(query, parsed answer) of every range query."""
        return [(dict(httpx.QueryParams(r.content.decode()))["query"], parse_matrix(body))
                for r, body in self.seen if r.url.path == "/api/v1/query_range"]


def assert_same_series(a, b) -> None:
    assert [s.labels for s in a] == [s.labels for s in b]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.timestamps, y.timestamps)
        np.testing.assert_array_equal(x.values, y.values)  # NaN == NaN here


@pytest.fixture(scope="module")
def fleet(prometheus_binaries):
    """300 series of `bt_load` over 2 days at 1 minute: unique `id`s (some full of regex
    metacharacters), a `zone` of 4 values, 3 series without `id`, one series that stopped 12 h ago."""
    end = align_down(time.time(), 3600)
    ts = np.arange(end - 2 * 86400, end + 1, STEP, dtype=np.int64)
    rng = np.random.default_rng(22)
    ids = [f"s{i:03d}" for i in range(300 - len(ODD) - 4)] + ODD
    series = [MetricSeries("bt_load", {"id": v, "zone": f"z{i % 4}"}, ts, 10 + i + rng.normal(0, 1, len(ts)))
              for i, v in enumerate(ids)]
    series += [MetricSeries("bt_load", {"zone": "z9", "role": f"r{j}"}, ts, np.full(len(ts), float(j)))
               for j in range(3)]
    early = ts <= end - 12 * 3600
    series.append(MetricSeries("bt_load", {"id": "gone", "zone": "z0"}, ts[early], np.ones(early.sum())))
    with LocalPrometheus(series) as prom:
        yield prom.url, end


def config_for(url: str, baseline: dict, sharding: dict | None = None, **source):
    doc = {"sources": {"main": {"url": url, **source}},
           "baselines": {"b": {"step": "1m", "history": "1d", **baseline}}}
    return parse_config(doc | ({"sharding": sharding} if sharding else {}))


def one_request(url: str, end: int, **baseline):
    """The reference: the whole range of every series in a single request."""
    result = fetch_baseline(config_for(url, {"expr": "bt_load", **baseline}, max_samples_per_request=10**7), "b", end)
    assert result.requests == 1
    return result


@pytest.mark.parametrize("max_points", [11000, 500])
def test_batches_give_exactly_what_one_request_gives(fleet, max_points):
    url, end = fleet
    reference = one_request(url, end)
    recorder = Recorder()
    config = config_for(url, {"expr": "bt_load"}, max_samples_per_request=20_000, max_points_per_request=max_points)
    batched = fetch_baseline(config, "b", end, transport=recorder.transport())
    assert_same_series(batched.series, reference.series)
    assert [s.name for s in batched.series] == [s.name for s in reference.series]
    assert (batched.points, batched.dropped, batched.failed) == (reference.points, 0, [])
    assert len(batched.series) == 300 and len(recorder.requests("/api/v1/series")) == 1
    answers = recorder.matrices()
    assert all(sum(len(s.values) for s in m.series) <= 20_000 for _, m in answers)
    # 1441 points a series: 13 series in one request each, or 40 in 3 requests of at most 500 points
    size, pieces = (13, 1) if max_points == 11000 else (40, 3)
    asked: dict[str, set] = {}
    for query, matrix in answers:
        asked.setdefault(query, set()).update(tuple(sorted(s.metric.items())) for s in matrix.series)
    assert 300 / size <= len(asked) <= 300 / size + 1 and len(answers) == pieces * len(asked)
    assert batched.requests == 1 + len(answers)
    returned = [key for keys in asked.values() for key in keys]
    assert len(returned) == len(set(returned)) == 300  # each in one batch only: a.b never brought aXb along


def test_odd_label_values_series_without_the_label_and_a_series_that_stopped_early(fleet):
    url, end = fleet
    result = fetch_baseline(config_for(url, {"expr": "bt_load"}, max_samples_per_request=20_000), "b", end)
    by_id = {s.labels.get("id"): s for s in result.series}
    assert set(ODD) <= set(by_id)
    assert sorted(s.labels["role"] for s in result.series if "id" not in s.labels) == ["r0", "r1", "r2"]
    gone = by_id["gone"]
    assert gone.observed == 12 * 60 + 1 + 5  # to 12 h before the end, and the 5 minutes Prometheus looks back
    assert np.isnan(gone.values[-60:]).all()


def test_max_series_drops_the_same_series_either_way(fleet):
    url, end = fleet
    reference = one_request(url, end, max_series=250)
    config = config_for(url, {"expr": "bt_load", "max_series": 250}, max_samples_per_request=20_000)
    batched = fetch_baseline(config, "b", end)
    assert batched.dropped == reference.dropped == 50
    assert_same_series(batched.series, reference.series)


@pytest.mark.parametrize("expr", ['{__name__="bt_load"}', 'bt_load{zone!="z3"}'])
def test_other_plain_selectors_are_batched_too(fleet, expr):
    url, end = fleet
    reference = fetch_baseline(config_for(url, {"expr": expr}, max_samples_per_request=10**7), "b", end)
    recorder = Recorder()
    batched = fetch_baseline(config_for(url, {"expr": expr}, max_samples_per_request=20_000), "b", end,
                             transport=recorder.transport())
    assert len(recorder.requests("/api/v1/series")) == 1
    assert_same_series(batched.series, reference.series)


def test_a_shard_asks_only_for_its_own_series(fleet):
    url, end = fleet
    sharding = {"shard": 1, "shards": 3}
    everything = one_request(url, end)
    config = config_for(url, {"expr": "bt_load"}, sharding, max_samples_per_request=20_000)
    own = [s for s in everything.series if config.sharding.owns("b", s.labels)]
    recorder = Recorder()
    result = fetch_baseline(config, "b", end, transport=recorder.transport())
    assert_same_series(result.series, own)
    returned = [s.metric for _, matrix in recorder.matrices() for s in matrix.series]
    assert 60 < len(own) < 140 and len(returned) == len(own)  # no other shard's series came back


def test_an_expr_that_is_not_a_plain_selector_keeps_time_pieces(fleet):
    url, end = fleet
    recorder = Recorder()
    expr = "sum by (zone) (rate(bt_load[5m]))"
    result = fetch_baseline(config_for(url, {"expr": expr}), "b", end, transport=recorder.transport())
    assert not recorder.requests("/api/v1/series")
    assert result.requests == 2 and len(result.series) == 5  # the newest piece, then the rest of the day


def test_on_series_gets_whole_sorted_batches_and_the_result_keeps_the_counts(fleet):
    url, end = fleet
    reference = one_request(url, end)
    got: list[list] = []
    config = config_for(url, {"expr": "bt_load"}, max_samples_per_request=20_000)
    result = fetch_baseline(config, "b", end, on_series=got.append)
    assert result.series == [] and result.points == reference.points and len(got) >= 20
    assert all(batch == sorted(batch, key=lambda s: sorted(s.labels.items())) for batch in got)
    assert all(len(s) == 1441 for batch in got for s in batch)
    assert_same_series(sorted((s for batch in got for s in batch), key=lambda s: sorted(s.labels.items())),
                       reference.series)


def test_on_series_gets_the_time_pieces_series_at_the_end(fleet):
    url, end = fleet
    got: list[list] = []
    result = fetch_baseline(config_for(url, {"expr": "bt_load * 1"}), "b", end, on_series=got.append)
    assert result.series == [] and [len(batch) for batch in got] == [300]


# --- a batch that fails ---------------------------------------------------------------------------

END = 1_699_999_980


def fake_prometheus(failing: str, ids: list[str]):
    """A source listing `m` series by `id`; a batch query whose regex matches `failing` always fails."""
    def answer(request: httpx.Request) -> httpx.Response:
        form = dict(httpx.QueryParams(request.content.decode()))
        if request.url.path == "/api/v1/series":
            return httpx.Response(200, json={"status": "success", "data": [{"__name__": "m", "id": i} for i in ids]})
        label, quoted = re.search(r'(\w+)=~(".*")', form["query"]).groups()
        wanted = [i for i in ids if re2.fullmatch(json.loads(quoted), {"__name__": "m", "id": i}[label])]
        if failing in wanted:
            return httpx.Response(503, text="overloaded")
        t = np.arange(int(form["start"]), int(form["end"]) + 1, int(form["step"]))
        result = [{"metric": {"__name__": "m", "id": i}, "values": [[int(x), "1"] for x in t]} for i in wanted]
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix", "result": result}})
    return answer


def test_a_batch_failing_on_every_retry_fails_only_its_series(make_config, caplog):
    ids = [f"i{n}" for n in range(6)]
    config = make_config("http://prom.test", {"b": {"expr": "m", "step": "1m", "history": "1d"}},
                         retries=2, max_samples_per_request=3000)  # 2 series a batch
    result = fetch_baseline(config, "b", END, transport=httpx.MockTransport(fake_prometheus("i3", ids)),
                            backoff=0.001, partial=True)
    assert [s.labels["id"] for s in result.series] == ["i0", "i1", "i4", "i5"]
    assert result.failed == [{"id": "i2"}, {"id": "i3"}]
    assert result.requests == 1 + 2 + 3  # the listing, two batches, the failing one 3 times
    assert "baseline b: a batch of 2 series (by id) failed; they keep their previous bands: " in caplog.text


def test_a_caller_not_taking_partial_results_gets_an_error_for_a_failed_batch(make_config):
    """Release markers, discovery or a chart short of some series would be wrong without knowing it."""
    from smartmetrics.adapters.source import SourceError

    ids = [f"i{n}" for n in range(6)]
    config = make_config("http://prom.test", {"b": {"expr": "m", "step": "1m", "history": "1d"}},
                         retries=0, max_samples_per_request=3000)
    with pytest.raises(SourceError, match="baseline b: 2 of its series could not be fetched"):
        fetch_baseline(config, "b", END, transport=httpx.MockTransport(fake_prometheus("i3", ids)))


def test_every_batch_failing_fails_the_baseline(make_config):
    from smartmetrics.adapters.source import SourceError

    config = make_config("http://prom.test", {"b": {"expr": "m", "step": "1m", "history": "1d"}}, retries=0)
    transport = httpx.MockTransport(fake_prometheus("i0", ["i0"]))
    with pytest.raises(SourceError, match="baseline b: http://prom.test failed after 1 attempt: HTTP 503"):
        fetch_baseline(config, "b", END, transport=transport)


def test_progress_counts_every_batch_request(fleet):
    url, end = fleet
    progress: list[tuple[int, int]] = []
    config = config_for(url, {"expr": "bt_load"}, max_samples_per_request=20_000, max_points_per_request=500)
    result = fetch_baseline(config, "b", end, on_progress=lambda done, total: progress.append((done, total)))
    total = result.requests - 1  # all but the listing
    assert progress[0] == (0, total) and progress[-1] == (total, total) and len(progress) == total + 1
