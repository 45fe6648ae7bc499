"""The Prometheus reader against a real local Prometheus (and its pure helpers)."""

from __future__ import annotations

import asyncio
import base64
import logging
import threading

import httpx
import numpy as np
import pytest

from smartmetrics.adapters.source import (
    Matrix,
    RawSeries,
    ResponseError,
    SourceError,
    fetch_baseline,
    merge_matrices,
    render_series,
    split_range,
)
from smartmetrics.app.promlocal import LocalPrometheus

pytestmark = pytest.mark.prometheus


def assert_same_series(a, b) -> None:
    assert [s.labels for s in a] == [s.labels for s in b]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.timestamps, y.timestamps)
        np.testing.assert_array_equal(x.values, y.values)  # NaN == NaN here


# --- pure helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize("start,end,step,max_points", [(0, 86400, 60, 100), (60, 60, 60, 2), (0, 600, 60, 11)])
def test_split_range_covers_the_grid_once_within_the_limit(start, end, step, max_points):
    chunks = split_range(start, end, step, max_points)
    grid = [t for lo, hi in chunks for t in range(lo, hi + 1, step)]
    assert grid == list(range(start, end + 1, step))
    assert all((hi - lo) // step + 1 <= max_points for lo, hi in chunks)


def test_split_range_rejects_a_reversed_range():
    with pytest.raises(ValueError, match="bad range"):
        split_range(100, 0, 10, 5)


def test_render_series_refuses_labels_that_collide_without_the_metric_name():
    one = RawSeries({"__name__": "a", "job": "x"}, np.array([0.0]), np.array([1.0]))
    two = RawSeries({"__name__": "b", "job": "x"}, np.array([0.0]), np.array([2.0]))
    with pytest.raises(ResponseError, match="same labels once the metric name is dropped"):
        render_series(Matrix([one, two]), 0, 0, 60, 10)


def test_merge_keeps_series_that_appear_in_only_some_chunks():
    early = Matrix([RawSeries({"job": "a"}, np.array([0.0]), np.array([1.0]))], ["w"])
    late = Matrix([RawSeries({"job": "a"}, np.array([60.0]), np.array([2.0])),
                   RawSeries({"job": "b"}, np.array([60.0]), np.array([3.0]))], ["w"])
    series, dropped = render_series(merge_matrices([early, late]), 0, 60, 60, 10)
    assert dropped == 0
    assert [s.values.tolist() for s in series] == [[1.0, 2.0], [pytest.approx(np.nan, nan_ok=True), 3.0]]
    assert merge_matrices([early, late]).warnings == ["w"]


# --- real Prometheus ------------------------------------------------------------------------


def test_chunked_range_is_complete_and_identical_to_one_request(prometheus, make_config):
    baseline = {"expr": "sm_requests_rate", "step": "1m", "history": "1d"}
    chunked = make_config(prometheus.url, {"r": baseline}, max_points_per_request=100)
    single = make_config(prometheus.url, {"r": baseline})
    a = fetch_baseline(chunked, "r", prometheus.end)
    b = fetch_baseline(single, "r", prometheus.end)
    # a plain selector whose range does not fit one request: the listing, then one batch of the 3
    # series, in 15 time pieces of at most 100 points, or in one request
    assert (a.requests, b.requests) == (16, 2)
    assert_same_series(a.series, b.series)
    assert len(a.series) == 3 and all(len(s) == 1441 and s.observed == 1441 for s in a.series)
    assert a.series[0].start == prometheus.end - 86400 and a.series[0].end == prometheus.end


def test_many_series_arrive_in_time_pieces_of_at_most_max_samples(prometheus, make_config):
    """An expr whose series cannot be listed first (not a plain selector), with 1,000 samples a request:
    the newest piece is as long as `max_series` allows (1,000 / 10 = 100 points), the 3 series it
    shows size the rest (333 points a piece), and the pieces add up to the answer of one request."""
    baseline = {"expr": "sm_requests_rate * 1", "step": "1m", "history": "1d", "max_series": 10}
    pieces = fetch_baseline(make_config(prometheus.url, {"r": baseline}, max_samples_per_request=1000), "r",
                            prometheus.end)
    whole = fetch_baseline(make_config(prometheus.url, {"r": {**baseline, "max_series": 3}}), "r", prometheus.end)
    assert pieces.requests == 1 + 5  # 100 newest points, then ceil(1341 / 333) pieces
    assert whole.requests == 1  # 1441 points x at most 3 series fit one request
    assert_same_series(pieces.series, whole.series)
    assert len(pieces.series) == 3 and all(s.observed == 1441 for s in pieces.series)


def test_two_weeks_at_one_minute_exceeds_one_request_and_matches_the_backfill(prometheus, make_config):
    config = make_config(prometheus.url, {"r": {"expr": "sm_requests_rate", "step": "1m", "history": "14d"}})
    result = fetch_baseline(config, "r", prometheus.end + 59)  # end is aligned down to the minute
    assert result.requests == 1 + 2 and result.dropped == 0  # the listing, then <= 11,000 points a piece
    assert result.points == 3 * 20161
    got = result.series[1]
    assert got.labels == {"job": "api", "instance": "b"} and got.name == "sm_requests_rate"
    want = prometheus.expected("sm_requests_rate", job="api", instance="b")
    np.testing.assert_allclose(got.values, want.values[-20161:], rtol=1e-12)
    np.testing.assert_array_equal(got.timestamps, want.timestamps[-20161:])


def test_a_query_prometheus_rejects_names_the_baseline_and_quotes_prometheus(prometheus, make_config):
    # syntax errors are refused by the config already; a Prometheus parser may still be stricter
    expr = "sm_requests_total @ 1e20"  # Prometheus' parser refuses the timestamp, promql-parser does not
    config = make_config(prometheus.url, {"qps": {"expr": expr, "history": "1h"}})
    with pytest.raises(SourceError) as err:
        fetch_baseline(config, "qps", prometheus.end)
    assert str(err.value).startswith("baseline qps: Prometheus rejected the query (bad_data): "), str(err.value)
    assert "parse error" in str(err.value) and err.value.baseline == "qps"


def test_selector_matching_nothing_is_an_empty_result(prometheus, make_config):
    config = make_config(prometheus.url, {"none": {"expr": 'sm_requests_rate{instance="zz"}', "history": "1d"}})
    result = fetch_baseline(config, "none", prometheus.end)
    assert result.series == [] and result.dropped == 0 and result.points == 0
    assert result.requests == 1  # the listing finds nothing to ask for


def test_gaps_nan_and_inf_become_nan_on_a_regular_grid(prometheus, make_config):
    config = make_config(prometheus.url, {"g": {"expr": "sm_gappy", "step": "1m", "history": "15d"}})
    (series,) = fetch_baseline(config, "g", prometheus.end).series
    assert np.all(np.diff(series.timestamps) == 60) and len(series) == 15 * 1440 + 1
    missing = np.flatnonzero(np.isnan(series.values))
    gap_start = 7 * 24 * 60 + 5  # Prometheus carries the last sample over its 5-minute lookback
    assert set(range(gap_start, gap_start + 175)) <= set(missing)
    assert set(missing) - set(range(gap_start, gap_start + 175)) == {len(series) - k for k in (100, 50, 20)}


def test_max_series_keeps_the_first_by_labels_and_warns(prometheus, make_config, caplog):
    config = make_config(prometheus.url, {"lat": {"expr": "sm_latency_seconds", "history": "1d", "max_series": 2}})
    with caplog.at_level(logging.WARNING, logger="smartmetrics.adapters.source"):
        result = fetch_baseline(config, "lat", prometheus.end)
    assert result.dropped == 1
    assert [s.labels["instance"] for s in result.series] == ["a", "b"]
    assert "baseline lat" in caplog.text and "dropping 1" in caplog.text


def test_own_baseline_label_is_renamed_and_metric_name_dropped(prometheus, make_config):
    config = make_config(prometheus.url, {"l": {"expr": "sm_labelled", "history": "1d"}})
    (series,) = fetch_baseline(config, "l", prometheus.end).series
    assert series.labels == {"job": "x", "exported_baseline": "theirs"}


class RecordingTransport(httpx.AsyncBaseTransport):
    """Forwards to the real server and keeps every request for inspection."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []
        self.encodings: list[str | None] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = await self.inner.handle_async_request(request)
        self.encodings.append(response.headers.get("Content-Encoding"))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_tenant_header_and_basic_auth_are_sent(prometheus, make_config, monkeypatch):
    monkeypatch.setenv("SM_TEST_PASSWORD", "s3cret")
    config = make_config(
        prometheus.url, {"r": {"expr": "sm_requests_rate", "step": "1h", "history": "1d"}},
        headers={"X-Scope-OrgID": "team-a"}, basic_auth={"username": "bob", "password_env": "SM_TEST_PASSWORD"},
    )
    transport = RecordingTransport()
    result = fetch_baseline(config, "r", prometheus.end, transport=transport)
    assert len(result.series) == 3
    (request,) = transport.requests
    assert request.headers["X-Scope-OrgID"] == "team-a"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"bob:s3cret").decode()
    form = dict(httpx.QueryParams(request.content.decode()))
    assert form == {"query": "sm_requests_rate", "start": str(prometheus.end - 86400),
                    "end": str(prometheus.end), "step": "3600"}


@pytest.mark.parametrize("compression,host,encoding", [
    ("auto", "127.0.0.1", None), ("auto", "localhost", None), ("gzip", "127.0.0.1", "gzip"), ("none", "localhost", None)])
def test_answers_come_uncompressed_from_a_loopback_source_unless_asked(prometheus, make_config, compression, host,
                                                                      encoding):
    url = prometheus.url.replace("127.0.0.1", host)
    baselines = {"r": {"expr": "sm_requests_rate", "step": "1h", "history": "1d"}}
    config = make_config(url, baselines, compression=compression)
    transport = RecordingTransport()
    result = fetch_baseline(config, "r", prometheus.end, transport=transport)
    assert transport.encodings == [encoding]  # what the real Prometheus sent back
    assert_same_series(result.series, fetch_baseline(make_config(url, baselines, compression="gzip"), "r",
                                                     prometheus.end).series)


@pytest.mark.parametrize("url,gzip", [("http://[::1]:9090", False), ("http://127.1.2.3", False),
                                      ("https://prometheus.example:9090", True), ("http://10.0.0.7:9090", True),
                                      ("http://prom.localhost", False), ("http://localhost.:9090", False),
                                      ("http://0.0.0.0:9090", False)])
def test_auto_compression_asks_for_gzip_from_every_host_but_a_loopback(url, gzip, make_config):
    assert make_config(url, {}).sources["main"].gzip() is gzip


@pytest.mark.parametrize("url,compression,gzip", [("http://10.0.0.7:9090", "none", False),
                                                  ("http://127.0.0.1:9090", "gzip", True)])
def test_compression_set_by_hand_wins_over_the_host(url, compression, gzip, make_config):
    assert make_config(url, {}, compression=compression).sources["main"].gzip() is gzip


def test_compression_and_an_accept_encoding_header_together_are_a_config_error(make_config):
    from smartmetrics.config import ConfigError

    with pytest.raises(ConfigError, match="sources.main: .*compression and an Accept-Encoding header"):
        make_config("http://10.0.0.7", {}, compression="none", headers={"accept-encoding": "gzip"})


def test_an_accept_encoding_header_of_the_users_own_is_sent_unchanged(prometheus, make_config):
    config = make_config(prometheus.url, {"r": {"expr": "sm_requests_rate", "step": "1h", "history": "1d"}},
                         headers={"ACCEPT-ENCODING": "gzip"})
    transport = RecordingTransport()
    fetch_baseline(config, "r", prometheus.end, transport=transport)
    assert transport.requests[0].headers.get_list("accept-encoding") == ["gzip"]
    assert transport.encodings == ["gzip"]


def test_bearer_token_from_file_is_sent(prometheus, make_config, tmp_path):
    token = tmp_path / "token"
    token.write_text("tok-123\n")
    config = make_config(prometheus.url, {"r": {"expr": "sm_requests_rate", "step": "1h", "history": "2h"}},
                         bearer_token_file=str(token))
    transport = RecordingTransport()
    fetch_baseline(config, "r", prometheus.end, transport=transport)
    assert transport.requests[0].headers["Authorization"] == "Bearer tok-123"


def test_works_from_a_worker_thread_and_inside_a_running_loop(prometheus, make_config):
    config = make_config(prometheus.url, {"r": {"expr": "sm_requests_rate", "step": "1h", "history": "1d"}})
    out: list[int] = []
    worker = threading.Thread(target=lambda: out.append(len(fetch_baseline(config, "r", prometheus.end).series)))
    worker.start()
    worker.join(30)

    async def inside_loop() -> int:
        return len(fetch_baseline(config, "r", prometheus.end).series)

    assert out == [3] and asyncio.run(inside_loop()) == 3


def test_unknown_baseline_is_a_clear_error(prometheus, make_config):
    config = make_config(prometheus.url, {"r": {"expr": "up"}})
    with pytest.raises(SourceError, match="baseline nope: not configured"):
        fetch_baseline(config, "nope", prometheus.end)


@pytest.fixture(scope="module")
def tls_prometheus(prometheus, self_signed_cert):
    """A second, empty Prometheus serving HTTPS with a self-signed certificate for 127.0.0.1."""
    cert, key = self_signed_cert
    with LocalPrometheus(tls=(cert, key)) as prom:
        yield prom.url, str(cert)


@pytest.mark.parametrize("tls", ["ca_file", "insecure_skip_verify"])
def test_https_with_a_private_ca_or_skip_verify(tls_prometheus, make_config, tls):
    url, cert = tls_prometheus
    settings = {"ca_file": cert} if tls == "ca_file" else {"insecure_skip_verify": True}
    config = make_config(url, {"one": {"expr": "vector(1)", "step": "1m", "history": "5m"}}, tls=settings)
    (series,) = fetch_baseline(config, "one").series
    assert series.labels == {} and series.values[-1] == 1.0


def test_https_with_an_unknown_ca_is_not_retried_and_says_what_to_check(tls_prometheus, make_config):
    url, _ = tls_prometheus
    config = make_config(url, {"one": {"expr": "vector(1)", "history": "1h"}})
    transport = RecordingTransport()  # verifies against the system CAs, which do not know ours
    with pytest.raises(SourceError, match=r"baseline one: TLS verification of https://.* failed.*tls.ca_file"):
        fetch_baseline(config, "one", transport=transport)
    assert len(transport.requests) == 1


def test_https_to_a_plain_http_server_is_a_clear_tls_error(prometheus, make_config):
    config = make_config(prometheus.url.replace("http://", "https://"), {"one": {"expr": "vector(1)"}}, retries=0)
    with pytest.raises(SourceError, match=r"baseline one: TLS handshake with https://.* failed.*serve HTTPS"):
        fetch_baseline(config, "one")


def test_an_answer_with_bad_utf8_is_a_retryable_response_error_on_either_parse_path() -> None:
    """The typed (msgspec) decode hands what it cannot read to the json path, which says what is
    wrong: bad bytes in a label are a garbled answer, worth retrying, never a bare UnicodeDecodeError."""
    from smartmetrics.adapters.matrix import parse_matrix

    body = (b'{"status":"success","data":{"resultType":"matrix","result":'
            b'[{"metric":{"a":"\xe9"},"values":[[60,"1"]]}]}}')
    with pytest.raises(ResponseError) as caught:
        parse_matrix(body)
    assert caught.value.retryable
