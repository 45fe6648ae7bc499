"""The alert history file: round trip, atomic writes, and a readable error for a bad file; feedback files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smartmetrics.adapters.alert_store import (
    AlertStoreError,
    alerts_path,
    load_alerts,
    load_feedback_file,
    save_alerts,
)
from smartmetrics.engine.alerts import AlertRecord


def test_round_trip_leaves_no_temporary_file(tmp_path: Path) -> None:
    records = [AlertRecord("a1", "qps", "f", {"baseline": "qps"}, '{job="api"}', 10.0, 20.0, 5.0, 1.0, 0.0, 2.0,
                           "above", "noise", 30.0)]
    assert load_alerts(tmp_path / "models") == []
    save_alerts(tmp_path / "models", records)
    assert load_alerts(tmp_path / "models") == records
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["alerts.json"]


@pytest.mark.parametrize("text, why", [
    ("{", "cannot read"),
    ('{"schema_version": 9, "alerts": []}', "schema version 1"),
    ('{"schema_version": 1, "alerts": [{"id": "x"}]}', "without baseline"),
    ('{"schema_version": 1, "alerts": [{"id": "x", "baseline": "q", "fingerprint": "f", "labels": {}, '
     '"series": "{}", "starts_at": 1, "feedback": "meh"}]}', "bad feedback"),
])
def test_a_bad_file_is_an_error_naming_it(tmp_path: Path, text: str, why: str) -> None:
    alerts_path(tmp_path).write_text(text)
    with pytest.raises(AlertStoreError, match=why) as caught:
        load_alerts(tmp_path)
    assert "alerts.json" in str(caught.value)


def test_a_feedback_file_may_be_the_history_the_cli_listing_or_the_api_answer(tmp_path: Path) -> None:
    record = AlertRecord("a1", "qps", "f", {}, "{}", 10.0, side="above", feedback="noise", feedback_at=12.0)
    save_alerts(tmp_path, [record])
    listing, answer = tmp_path / "list.json", tmp_path / "api.json"
    listing.write_text(json.dumps([record.to_doc()]))
    answer.write_text(json.dumps({"status": "success", "data": [record.to_doc()]}))
    assert [load_feedback_file(p) for p in (alerts_path(tmp_path), listing, answer)] == [[record]] * 3


@pytest.mark.parametrize("text, why", [
    (None, "cannot read"),
    ("[", "not JSON"),
    ('{"status": "error"}', "expected alerts.json"),
    ('[{"id": "x", "baseline": "q", "fingerprint": "f", "labels": {}, "series": "{}", "starts_at": 1}, 3]',
     "record 1: not an object"),
    ('[{"id": "x", "baseline": "q", "fingerprint": "f", "labels": {}, "series": "{}", "starts_at": "noon"}]',
     "invalid record 0: alert record x: starts_at must be Unix seconds"),
])
def test_a_bad_feedback_file_is_an_error_naming_it_and_the_record(tmp_path: Path, text: str | None, why: str) -> None:
    path = tmp_path / "feedback.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(AlertStoreError, match=why) as caught:
        load_feedback_file(path)
    assert str(caught.value).startswith(str(path))
