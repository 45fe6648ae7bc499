"""The alert history file: round trip, atomic writes, and a readable error for a bad file."""

from __future__ import annotations

from pathlib import Path

import pytest

from smartmetrics.adapters.alert_store import AlertStoreError, alerts_path, load_alerts, save_alerts
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
