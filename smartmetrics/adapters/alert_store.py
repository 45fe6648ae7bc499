"""The alert history on disk: `<store>/alerts.json`, beside the baselines, written atomically.

One JSON document `{"schema_version": 1, "alerts": [<record>, ...]}` (records as
`smartmetrics.engine.alerts.AlertRecord.to_doc` writes them). A file that cannot be read raises
`AlertStoreError` naming the file; a missing one is an empty history.
"""

from __future__ import annotations

import json
from pathlib import Path

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
    try:
        return [AlertRecord.from_doc(d) for d in doc["alerts"]]
    except (TypeError, ValueError) as exc:
        raise AlertStoreError(f"{path}: invalid record: {exc}") from None


def save_alerts(root: str | Path, records: list[AlertRecord]) -> Path:
    """Write the whole history atomically (temp file, fsync, rename)."""
    Path(root).mkdir(parents=True, exist_ok=True)
    body = json.dumps({"schema_version": ALERTS_SCHEMA, "alerts": [r.to_doc() for r in records]},
                      sort_keys=True, allow_nan=False, indent=1).encode()
    return write_atomic(alerts_path(root), lambda fh: fh.write(body), ".alerts-", ".json.tmp")
