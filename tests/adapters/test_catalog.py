"""The catalog client of `smartmetrics init`: names, metadata, series samples and instant queries, and
readable errors, against a mocked Prometheus API."""

from __future__ import annotations

import httpx
import pytest

from smartmetrics.adapters.catalog import Catalog
from smartmetrics.adapters.source import SourceError
from smartmetrics.config import Source

SOURCE = Source(url="http://prom.example:9090", headers={"X-Scope-OrgID": "team-a"})


def api(request: httpx.Request) -> httpx.Response:
    assert request.headers["X-Scope-OrgID"] == "team-a"
    path = request.url.path
    if path == "/api/v1/label/__name__/values":
        return httpx.Response(200, json={"status": "success", "data": ["up", "b_total", "a"]})
    if path == "/api/v1/metadata":
        return httpx.Response(200, json={"status": "success", "data": {
            "b": [{"type": "counter", "help": "", "unit": ""}], "a": [{"type": "gauge", "help": "", "unit": ""}]}})
    if path == "/api/v1/series":
        assert request.url.params["match[]"] == "b_total" and request.url.params["limit"] == "2"
        return httpx.Response(200, json={"status": "success", "data": [
            {"__name__": "b_total", "job": "x"}, {"__name__": "b_total", "job": "y"}, {"__name__": "b_total", "job": "z"}]})
    if path == "/api/v1/query":
        if request.url.params["query"] == "bad(":
            return httpx.Response(400, json={"status": "error", "errorType": "bad_data", "error": "parse error"})
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"job": "x"}, "value": [1, "3"]}]}})
    return httpx.Response(404, text="404 page not found")


def test_names_metadata_series_and_queries() -> None:
    with Catalog(SOURCE, transport=httpx.MockTransport(api)) as catalog:
        assert catalog.fetch_names() == ["a", "b_total", "up"]
        assert catalog.fetch_metadata() == {"b": "counter", "a": "gauge"}
        assert catalog.fetch_series("b_total", limit=2, now=7200) == [{"job": "x"}, {"job": "y"}]
        assert catalog.query("sum(b_total)") == [{"metric": {"job": "x"}, "value": [1, "3"]}]
        with pytest.raises(SourceError, match="bad_data.*parse error"):
            catalog.query("bad(")


def test_wrong_url_and_not_prometheus_are_readable() -> None:
    wrong = Source(url="http://prom.example:9090/api/v1", headers={"X-Scope-OrgID": "team-a"})
    with Catalog(wrong, transport=httpx.MockTransport(api)) as catalog, \
            pytest.raises(SourceError, match="not found.*without /api/v1"):
        catalog.fetch_names()
    html = httpx.MockTransport(lambda request: httpx.Response(200, text="<html>"))
    with Catalog(SOURCE, transport=html) as catalog, pytest.raises(SourceError, match="no JSON; is it Prometheus"):
        catalog.fetch_names()
