"""Remote-write encode speed: a band snapshot of many series taken at one instant, encoded into
snappy-compressed `WriteRequest`s (`smartmetrics.adapters.remote_write`, protobuf's runtime message
classes), beside a hand-written protobuf encoder of the same bytes, kept here only to compare.

    python -m smartmetrics.benchmarks.remote_write [--series 100000] [--batch-size 5000]
"""

from __future__ import annotations

import argparse
import struct
import time
from collections.abc import Iterable

import cramjam
import numpy as np

from smartmetrics.adapters.exporter import Snapshot
from smartmetrics.adapters.remote_write import SeriesValues, render_write_requests, snapshot_series
from smartmetrics.engine.state import BaselineState, SeriesBand

T0 = 1_700_000_000


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _label(name: str, value: str) -> bytes:
    return _field(1, _field(1, name.encode()) + _field(2, value.encode()))


def render_by_hand(series: Iterable[SeriesValues], timestamp_ms: int, batch_size: int) -> list[bytes]:
    """The same request bodies as `render_write_requests`, encoded field by field in Python."""
    stamp, bodies, parts = b"\x10" + _varint(timestamp_ms), [], []
    for labels, values in series:
        ordered = sorted(labels.items())  # the benchmark's labels all sort after __name__
        common = b"".join(_label(k, v) for k, v in ordered)
        for name, value in values:
            sample = _field(2, b"\x09" + struct.pack("<d", value) + stamp)
            parts.append(_field(1, _label("__name__", name) + common + sample))
            if len(parts) == batch_size:
                bodies.append(bytes(cramjam.snappy.compress_raw(b"".join(parts))))
                parts = []
    if parts:
        bodies.append(bytes(cramjam.snappy.compress_raw(b"".join(parts))))
    return bodies


def make_snapshot(series: int) -> Snapshot:
    """One baseline of `series` series, each with a 5-hour band at 1-minute steps."""
    bands = []
    for i in range(series):
        y = 100.0 + i + np.arange(300, dtype=float)
        labels = {"job": "api", "instance": f"host-{i:06d}:9100", "model": f"m{i % 50}"}
        bands.append(SeriesBand(labels, T0, 60, y, y - 5, y + 5))
    return Snapshot({"qps": BaselineState("qps", T0, tuple(bands))})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    snapshot, now = make_snapshot(args.series), T0 + 90
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        series = list(snapshot_series(snapshot, now))
        t1 = time.perf_counter()
        bodies = render_write_requests(series, now * 1000, args.batch_size)
        t2 = time.perf_counter()
        by_hand = render_by_hand(series, now * 1000, args.batch_size)
        t3 = time.perf_counter()
        assert [b for b, _ in bodies] == by_hand, "the two encoders disagree"
        samples, size = sum(n for _, n in bodies), sum(len(b) for b, _ in bodies) / 1e6
        print(f"{samples} samples in {len(bodies)} requests ({size:.1f} MB): snapshot {t1 - t0:.2f}s, "
              f"protobuf {t2 - t1:.2f}s, by hand {t3 - t2:.2f}s")


if __name__ == "__main__":
    main()
