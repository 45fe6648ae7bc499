"""The alert history on disk: `<store>/alerts.json`, beside the baselines, written atomically.

One JSON document `{"schema_version": 1, "alerts": [<record>, ...]}` (records as
`smartmetrics.engine.alerts.AlertRecord.to_doc` writes them). A file that cannot be read raises
`AlertStoreError` naming the file; a missing one is an empty history. `load_feedback_file` reads
the same records for a walk-forward replay (`smartmetrics backtest --feedback`), from this file, the
output of `smartmetrics alerts --json` or the answer of `GET /api/v1/alerts`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from smartmetrics.adapters.store import write_atomic
from smartmetrics.engine.alerts import AlertRecord

ALERTS_FILE = "alerts.json"
ALERTS_SCHEMA = 1


class AlertStoreError(Exception):
    """An alert history file that is not valid."""


def alerts_path(root: str | Path) -> Path:
    return Path(root) / ALERTS_FILE


def load_alerts(root: str | Path) -> list[AlertRecord]:
    """The recorded alerts under the store `root` (none if it has no history yet)."""
    path = alerts_path(root)
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise AlertStoreError(f"{path}: cannot read: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema_version") != ALERTS_SCHEMA or not isinstance(doc.get("alerts"), list):
        raise AlertStoreError(f"{path}: not an alert history of schema version {ALERTS_SCHEMA}")
    return _parse_records(doc["alerts"], path)


def _parse_records(docs: list[Any], path: Path) -> list[AlertRecord]:
    """The records of a JSON list; `AlertStoreError` naming the file and the first bad record."""
    records = []
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict):
            raise AlertStoreError(f"{path}: record {i}: not an object")
        try:
            records.append(AlertRecord.from_doc(doc))
        except (TypeError, ValueError) as exc:
            raise AlertStoreError(f"{path}: invalid record {i}: {exc}") from None
    return records


def load_feedback_file(path: str | Path) -> list[AlertRecord]:
    """The alert records of a feedback file: an `alerts.json`, the list `smartmetrics alerts --json`
    prints, or the `{"status": "success", "data": [...]}` of `GET /api/v1/alerts`; `AlertStoreError`
    naming the file (missing, not JSON, another shape, a bad record)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_bytes())
    except OSError as exc:
        raise AlertStoreError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise AlertStoreError(f"{path}: not JSON: {exc}") from None
    if isinstance(doc, dict) and isinstance(doc.get("alerts"), list):
        docs = doc["alerts"]
    elif isinstance(doc, dict) and isinstance(doc.get("data"), list):
        docs = doc["data"]
    elif isinstance(doc, list):
        docs = doc
    else:
        raise AlertStoreError(f"{path}: expected alerts.json ({{\"alerts\": [...]}}), a list of alert records "
                              "(smartmetrics alerts --json) or the API's {\"data\": [...]}")
    return _parse_records(docs, path)


def save_alerts(root: str | Path, records: list[AlertRecord]) -> Path:
    """Write the whole history atomically (temp file, fsync, rename)."""
    Path(root).mkdir(parents=True, exist_ok=True)
    body = json.dumps({"schema_version": ALERTS_SCHEMA, "alerts": [r.to_doc() for r in records]},
                      sort_keys=True, allow_nan=False, indent=1).encode()
    return write_atomic(alerts_path(root), lambda fh: fh.write(body), ".alerts-", ".json.tmp")
