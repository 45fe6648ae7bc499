"""Faults a real Prometheus cannot be made to produce on demand, through `httpx.MockTransport`."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

import httpx
import pytest

from smartmetrics.adapters.source import SourceError, fetch_baseline
from smartmetrics.app.promlocal import free_port

END = 1_699_999_980  # a whole minute
OK_BODY = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [
    {"metric": {"__name__": "up", "job": "a"}, "values": [[END - 60, "1"], [END, "2"]]},
]}})
Step = Callable[[httpx.Request], httpx.Response]


def ok(_: httpx.Request) -> httpx.Response:
    return httpx.Response(200, text=OK_BODY)


def raise_(exc: type[httpx.HTTPError]) -> Step:
    def step(request: httpx.Request) -> httpx.Response:
        raise exc("simulated", request=request)
    return step


def status(code: int, text: str = "", **headers: str) -> Step:
    return lambda _: httpx.Response(code, text=text, headers=headers)


class Script:
    """A mock server answering each request with the next step; the last step repeats."""

    def __init__(self, *steps: Step):
        self.steps = list(steps)
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        step = self.steps[min(self.calls, len(self.steps) - 1)]
        self.calls += 1
        return step(request)


@pytest.fixture
def run(make_config):
    """Fetch baseline `qps` (2 points at 1m) through a scripted mock server."""

    def go(script: Script, retries: int = 3, url: str = "http://prom.test:9090", **source) -> object:
        config = make_config(url, {"qps": {"expr": "up", "step": "1m", "history": "2m"}},
                             retries=retries, **source)
        transport = httpx.MockTransport(script) if url.startswith("http://prom.test") else None
        return fetch_baseline(config, "qps", END, transport=transport, backoff=0.001)

    return go


@pytest.mark.parametrize("first", [
    raise_(httpx.ReadTimeout), raise_(httpx.ConnectTimeout), raise_(httpx.ConnectError),
    raise_(httpx.RemoteProtocolError), status(503, "overloaded"), status(502), status(500),
    lambda _: httpx.Response(200, text=OK_BODY[: len(OK_BODY) // 2]),
], ids=["read-timeout", "connect-timeout", "connect-error", "protocol-error", "503", "502", "500",
        "truncated-json"])
def test_transient_fault_then_success(run, first):
    script = Script(first, ok)
    result = run(script)
    assert script.calls == 2 and result.requests == 2
    assert result.series[0].values[1:].tolist() == [1.0, 2.0]


def test_429_honours_a_small_retry_after(run):
    script = Script(status(429, "slow down", **{"Retry-After": "0.3"}), ok)
    started = time.monotonic()
    run(script)
    assert script.calls == 2 and time.monotonic() - started >= 0.3


def test_429_with_a_long_retry_after_falls_back_to_backoff(run):
    script = Script(status(429, "slow down", **{"Retry-After": "3600"}), ok)
    started = time.monotonic()
    run(script)
    assert script.calls == 2 and time.monotonic() - started < 5


def test_bad_request_is_not_retried_and_quotes_prometheus(run):
    body = json.dumps({"status": "error", "errorType": "bad_data", "error": "1:14: parse error: oops"})
    script = Script(status(400, body))
    with pytest.raises(SourceError) as err:
        run(script)
    assert script.calls == 1
    assert str(err.value) == "baseline qps: Prometheus rejected the query (bad_data): 1:14: parse error: oops"


@pytest.mark.parametrize("code,hint", [(401, "basic_auth"), (403, "basic_auth"), (404, "API root")])
def test_other_client_errors_are_not_retried_and_say_what_to_check(run, code, hint):
    script = Script(status(code, "nope"))
    with pytest.raises(SourceError, match=hint):
        run(script)
    assert script.calls == 1


def test_retries_exhausted_report_the_last_fault(run):
    script = Script(status(503, json.dumps({"status": "error", "errorType": "unavailable", "error": "busy"})))
    with pytest.raises(SourceError) as err:
        run(script, retries=3)
    assert script.calls == 4
    assert str(err.value) == ("baseline qps: http://prom.test:9090 failed after 4 attempts: "
                              "Prometheus rejected the query (unavailable): busy")


def test_timeouts_exhausted_say_what_to_raise(run):
    script = Script(raise_(httpx.ReadTimeout))
    with pytest.raises(SourceError, match=r"no answer from .* after 2 attempts: timed out after 30s .*timeout"):
        run(script, retries=1)


def test_connection_refused_on_a_closed_port(run):
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SourceError) as err:
        run(Script(ok), retries=1, url=url)
    assert str(err.value) == (f"baseline qps: cannot reach {url} after 2 attempts: connection refused "
                              "(check sources.main.url and that the server is running)")


def test_prometheus_warnings_are_logged(run, caplog):
    body = json.loads(OK_BODY)
    body["warnings"] = ["partial response: store b unavailable"]
    with caplog.at_level(logging.WARNING, logger="smartmetrics.adapters.source"):
        run(Script(lambda _: httpx.Response(200, json=body)))
    assert "baseline qps: Prometheus warns: partial response: store b unavailable" in caplog.text


def test_wrong_result_type_is_a_clear_error(run):
    body = {"status": "success", "data": {"resultType": "vector", "result": []}}
    script = Script(lambda _: httpx.Response(200, json=body))
    with pytest.raises(SourceError, match="expected a matrix result, got 'vector'"):
        run(script)
    assert script.calls == 1


def test_concurrency_is_bounded(make_config):
    in_flight, peak = 0, 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        if request.url.path == "/api/v1/series":
            return httpx.Response(200, json={"status": "success", "data": [{"__name__": "up", "job": "a"}]})
        return httpx.Response(200, text=OK_BODY)

    config = make_config("http://prom.test", {"qps": {"expr": "up", "step": "1m", "history": "1d"}},
                         concurrency=3, max_points_per_request=100)
    result = fetch_baseline(config, "qps", END, transport=httpx.MockTransport(slow))
    assert result.requests == 1 + 15 and peak == 3  # the listing, then 15 pieces of the one series


def test_unreadable_ca_file_is_a_clear_error(make_config, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate")
    config = make_config("https://prom.test", {"qps": {"expr": "up"}}, tls={"ca_file": str(ca)})
    with pytest.raises(SourceError, match="baseline qps: sources.main.tls: cannot load the CA or client certificate"):
        fetch_baseline(config, "qps", END)


@pytest.mark.parametrize("doc", [
    {"status": "success", "data": ["not", "an", "object"]},
    {"status": "success", "data": {"resultType": "matrix", "result": {"a": 1}}},
    {"status": "success", "data": {"resultType": "matrix", "result": [{"metric": ["job"], "values": []}]}},
    {"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}, "values": "1,2"}]}},
    {"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}, "values": [[1]]}]}},
    {"status": "success", "data": {"resultType": "matrix", "result": ["x"]}},
])
def test_a_malformed_answer_is_a_source_error_for_its_baseline(run, doc):
    with pytest.raises(SourceError) as info:
        run(Script(lambda _: httpx.Response(200, text=json.dumps(doc))), retries=1)
    assert info.value.baseline == "qps" and "malformed" in str(info.value)


def test_warnings_of_any_shape_are_kept_as_text(run):
    body = json.loads(OK_BODY) | {"warnings": {"odd": "shape"}}
    result = run(Script(lambda _: httpx.Response(200, text=json.dumps(body))))
    assert len(result.series) == 1


def test_values_no_metric_can_take_become_gaps(run):
    body = json.loads(OK_BODY)
    body["data"]["result"][0]["values"] = [[END - 60, "+Inf"], [END, "1e300"]]
    result = run(Script(lambda _: httpx.Response(200, text=json.dumps(body))))
    assert result.series[0].observed == 0


def test_secrets_in_a_source_url_or_headers_never_show(make_config, tmp_path, capsys):
    from smartmetrics.app.cli import main

    config = make_config("http://prom:s3cret-pw@prom.test:9090", {"qps": {"expr": "up", "step": "1m", "history": "2m"}},
                         retries=0, headers={"X-Api-Key": "tok-123"})
    script = Script(status(500, "boom"))
    with pytest.raises(SourceError) as info:
        fetch_baseline(config, "qps", END, transport=httpx.MockTransport(script), backoff=0.001)
    assert "s3cret-pw" not in str(info.value) and "prom:<redacted>@prom.test" in str(info.value)
    path = tmp_path / "c.yaml"
    path.write_text("sources:\n  main:\n    url: http://prom:s3cret-pw@prom.test:9090\n"
                    "    headers: {X-Api-Key: tok-123}\nbaselines:\n  qps: {expr: up}\n")
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "s3cret-pw" not in out and "tok-123" not in out and "X-Api-Key: <redacted>" in out


# --- answers that trickle, swell or do not decode -----------------------------------------------


def dripping(_: httpx.Request) -> httpx.Response:
    """Every byte well within the read timeout, the whole answer far beyond it."""
    async def body():
        for i in range(0, len(OK_BODY), 16):
            await asyncio.sleep(0.3)
            yield OK_BODY[i:i + 16].encode()
    return httpx.Response(200, content=body())


def test_an_answer_that_trickles_in_times_out_as_a_whole(run):
    script = Script(dripping)
    started = time.monotonic()
    with pytest.raises(SourceError, match="timed out after 1s"):
        run(script, retries=1, timeout="1s")
    assert script.calls == 2 and time.monotonic() - started < 4.5  # without a deadline: 2 x 3 s, and success


def test_an_answer_that_decodes_past_the_limit_is_refused(run, monkeypatch):
    import gzip

    from smartmetrics.adapters import client

    monkeypatch.setattr(client, "MAX_ANSWER_BYTES", 1 << 20)
    bomb = gzip.compress(b'{"status":"success","data":{"resultType":"matrix","result":[' + b" " * (8 << 20) + b"]}}")
    script = Script(lambda _: httpx.Response(200, content=bomb, headers={"Content-Encoding": "gzip"}))
    with pytest.raises(SourceError, match=r"more than 1 MiB \(decoded\); lower sources.main.max_samples_per_request"):
        run(script)
    assert script.calls == 1 and len(bomb) < 64 << 10  # final: the same request would get the same answer


@pytest.mark.parametrize("body", ["corrupt", "not-compressed"])
def test_an_answer_that_does_not_decode_is_retried_and_names_the_setting(run, body):
    import gzip

    data = bytearray(gzip.compress(OK_BODY.encode()))
    data[-6] ^= 0xFF  # a wrong CRC
    content = bytes(data) if body == "corrupt" else OK_BODY.encode()
    bad = lambda _: httpx.Response(200, content=content, headers={"Content-Encoding": "gzip"})  # noqa: E731
    script = Script(bad, ok)
    assert run(script).series[0].values[1:].tolist() == [1.0, 2.0] and script.calls == 2
    with pytest.raises(SourceError, match="check sources.main.compression and headers"):
        run(Script(bad), retries=1)


def test_a_listing_that_warns_of_a_partial_answer_is_logged(run, caplog):
    """A baseline fetched in batches of series is listed first: what the listing leaves out is never
    asked for, so its warnings (Thanos', Mimir's partial answers) must be seen."""
    listing = {"status": "success", "warnings": ["partial response: store b unavailable"],
               "data": [{"__name__": "up", "job": "a"}]}

    def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=listing) if request.url.path.endswith("/series") else ok(request)

    with caplog.at_level(logging.WARNING, logger="smartmetrics.adapters.source"):
        result = run(Script(server), max_samples_per_request=1000)  # too many for one request: batched
    assert result.series[0].values[1:].tolist() == [1.0, 2.0]
    assert "series listing of {__name__=\"up\"} warns: partial response: store b unavailable" in caplog.text
