"""Which daemon owns a series: rendezvous (highest-random-weight) hashing of (baseline, series labels).

Every daemon of a sharded deployment lists the same series and keeps those it wins: each shard draws
a pseudo-random weight for the series from a hash of (baseline, labels, shard) and the highest weight
owns it. No coordination, no table to keep: every daemon computes the same owner. Adding a shard moves
only the series the new shard wins (about 1/(N+1) of them, taken evenly from the others); removing one
moves only that shard's series.
"""

from __future__ import annotations

import hashlib
import re

from smartmetrics.engine.series import labels_key

_ORDINAL = re.compile(r"-(\d+)$")


def weight(alias: str, key: str, shard: int) -> int:
    """The shard's draw for one series: 64 bits of BLAKE2b over (baseline, labels key, shard)."""
    digest = hashlib.blake2b(f"{alias}\0{key}\0{shard}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(alias: str, labels: dict[str, str], shards: int) -> int:
    """The shard (0..shards-1) that owns the series with `labels` of baseline `alias`.

    >>> owner("qps", {"job": "api"}, 1)
    0
    >>> owner("qps", {"job": "api"}, 3) == owner("qps", {"job": "api"}, 3)
    True
    """
    return owner_of_key(alias, labels_key(labels), shards)


def owner_of_key(alias: str, key: str, shards: int) -> int:
    """`owner` for a series given by its labels key."""
    if shards <= 1:
        return 0
    return max(range(shards), key=lambda s: weight(alias, key, s))


def ordinal(hostname: str) -> int | None:
    """The pod ordinal at the end of a StatefulSet pod's host name (`smartmetrics-2` -> 2), or None.

    >>> ordinal("smartmetrics-12"), ordinal("smartmetrics")
    (12, None)
    """
    found = _ORDINAL.search(hostname)
    return int(found.group(1)) if found else None
