"""The store: round trips, interpolation, atomic writes, and corrupt files that never stop a start."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from smartmetrics.adapters import store
from smartmetrics.adapters.store import StoreError, load_baseline, load_store, save_baseline
from smartmetrics.engine.state import BaselineState, SeriesBand


def band(labels: dict[str, str], start: int = 1_700_000_000, n: int = 5, step: int = 300) -> SeriesBand:
    y = np.arange(n, dtype=float) * 10 + 100
    return SeriesBand(labels, start, step, y, y - 5, y + 7.5, meta={"curve_type": "seasonal", "models": [["profile", 1.0]]})


def state(alias: str = "qps", bands: tuple[SeriesBand, ...] | None = None) -> BaselineState:
    bands = bands or (band({"model": "a"}), band({"model": "b"}, n=3), band({"model": 'we"ird\n'}, n=1))
    return BaselineState(alias, 1_700_000_123.5, bands, meta={"expr": "up"})


def test_round_trip_keeps_tables_labels_and_metadata(tmp_path: Path) -> None:
    original = state()
    path = save_baseline(tmp_path, original)
    loaded = load_baseline(path)
    assert (loaded.alias, loaded.fitted_at, loaded.meta) == ("qps", 1_700_000_123.5, {"expr": "up"})
    assert len(loaded.series) == 3
    for a, b in zip(original.series, loaded.series):
        assert a.labels == b.labels and (a.start, a.step, a.meta) == (b.start, b.step, b.meta)
        for name in ("yhat", "lower", "upper"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_archive_holds_no_pickled_objects(tmp_path: Path) -> None:
    path = save_baseline(tmp_path, state())
    with np.load(path, allow_pickle=False) as archive:
        assert all(archive[name].dtype != object for name in archive.files)


def test_at_interpolates_and_refuses_outside_the_table() -> None:
    b = band({"m": "a"}, start=1000, n=5, step=100)  # yhat 100, 110, ..., 140 at t=1000..1400
    assert b.at(1000) == (100.0, 95.0, 107.5)
    assert b.at(1150) == pytest.approx((115.0, 110.0, 122.5))
    assert b.at(1400) == (140.0, 135.0, 147.5)
    assert b.at(999) is None and b.at(1401) is None


def test_at_is_none_in_a_gap() -> None:
    b = band({"m": "a"}, start=0, n=3, step=10)
    b.yhat[1] = np.nan
    assert b.at(5) is None and b.at(0) is not None


def test_merge_replaces_by_labels_and_drops_expired() -> None:
    old = state(bands=(band({"m": "a"}), band({"m": "b"})))
    newer = band({"m": "a"}, start=2_000_000_000)
    merged = old.merged([newer, band({"m": "c"})], fitted_at=5.0, drop={band({"m": "b"}).key})
    assert sorted(b.labels["m"] for b in merged.series) == ["a", "c"]
    assert next(b for b in merged.series if b.labels["m"] == "a").start == 2_000_000_000


def test_failed_write_leaves_previous_state_and_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_baseline(tmp_path, state())

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store.np, "savez", crash)
    with pytest.raises(OSError):
        save_baseline(tmp_path, state(bands=(band({"m": "new"}),)))
    assert len(load_baseline(tmp_path / "qps" / "state.npz").series) == 3
    assert not list((tmp_path / "qps").glob(".state-*"))


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
        lambda p: p.write_bytes(b"\x00" * 100),
        lambda p: p.write_bytes(b""),
    ],
    ids=["truncated", "garbage", "empty"],
)
def test_corrupt_file_is_reported_and_others_still_load(tmp_path: Path, damage) -> None:
    save_baseline(tmp_path, state("qps"))
    save_baseline(tmp_path, state("latency"))
    damage(tmp_path / "qps" / "state.npz")
    with pytest.raises(StoreError, match="qps"):
        load_baseline(tmp_path / "qps" / "state.npz")
    states, errors = load_store(tmp_path)
    assert list(states) == ["latency"] and len(errors) == 1 and "qps" in errors[0]


def test_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    arrays = store.render_state(state())
    arrays["header"] = np.frombuffer(b'{"schema_version": 99}', dtype=np.uint8)
    path = tmp_path / "x.npz"
    np.savez(path, **arrays)
    with pytest.raises(StoreError, match="schema version 99 is not supported"):
        load_baseline(path)


def test_pickled_object_array_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.npz"
    np.savez(path, header=np.array([{"a": 1}], dtype=object))
    with pytest.raises(StoreError):
        load_baseline(path)
    assert zipfile.is_zipfile(path)


def test_stray_temp_files_from_a_crash_are_cleaned(tmp_path: Path) -> None:
    save_baseline(tmp_path, state())
    (tmp_path / "qps" / ".state-abc.npz.tmp").write_bytes(b"half")
    states, errors = load_store(tmp_path)
    assert "qps" in states and not errors
    assert not list((tmp_path / "qps").glob(".state-*"))


def test_a_reader_never_removes_a_write_under_way(tmp_path: Path) -> None:
    """Any process may read the store while the daemon writes it: the daemon's temporary file must
    survive the read, or its rename fails (found by an end-to-end test polling the store)."""
    save_baseline(tmp_path, state())
    writing = tmp_path / "qps" / f".state-{os.getpid()}-now.npz.tmp"  # this process: alive
    writing.write_bytes(b"half")
    states, errors = load_store(tmp_path)
    assert "qps" in states and not errors and writing.exists()


def test_empty_or_missing_store(tmp_path: Path) -> None:
    assert load_store(tmp_path / "nothing") == ({}, [])


def _with_header(path: Path, edit) -> None:
    """Rewrite the archive at `path` with its JSON header changed by `edit(header) -> header`."""
    import json

    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = edit(json.loads(arrays["header"].tobytes().decode()))
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **arrays)


@pytest.mark.parametrize("edit,why", [
    (lambda h: [h], "not an object"),  # a list-shaped header
    (lambda h: {**h, "series": {"0": h["series"][0]}}, "series"),  # nested the wrong way
    (lambda h: {**h, "series": [{**h["series"][0], "labels": {"model": 7}}]}, "labels"),  # an integer label value
    (lambda h: {**h, "series": [{**h["series"][0], "labels": {"a": {"b": "c"}}}]}, "labels"),
    (lambda h: {**h, "series": [{**h["series"][0], "step": 0}]}, "step"),
    (lambda h: {**h, "series": [{**h["series"][0], "points": 10_000}]}, "does not hold"),
    (lambda h: {**h, "fitted_at": "yesterday"}, "fitted_at"),
    (lambda h: {**h, "alias": "latency"}, "not the one of its folder"),  # an impostor for another baseline
], ids=["list", "series-dict", "int-label", "nested-label", "zero-step", "points", "fitted-at", "impostor"])
def test_a_bad_header_is_set_aside_counted_and_never_merged(tmp_path: Path, edit, why: str) -> None:
    save_baseline(tmp_path, state("qps"))
    save_baseline(tmp_path, state("latency"))
    _with_header(tmp_path / "qps" / "state.npz", edit)
    states, errors = load_store(tmp_path)
    assert list(states) == ["latency"] and len(errors) == 1 and why in errors[0]
    assert len(states["latency"].series) == 3  # nothing merged into it
    assert not (tmp_path / "qps" / "state.npz").exists()
    assert len(list((tmp_path / "qps").glob("state.npz.bad-*"))) == 1  # kept for whoever investigates


# --- SIGKILL mid-write (issue 20): 50 kills at random moments of store writes ------------------

WRITER = """
import sys, numpy as np
from smartmetrics.engine.state import BaselineState, SeriesBand
from smartmetrics.adapters.store import save_baseline
root, n = sys.argv[1], 3000
for generation in range(1, 1_000_000):
    y = np.full(288, float(generation))
    bands = tuple(SeriesBand({"i": str(i)}, 1_700_000_000, 300, y, y - 1, y + 1) for i in range(n))
    save_baseline(root, BaselineState("qps", float(generation), bands))
    print(generation, flush=True)
"""


@pytest.mark.slow
def test_sigkill_at_random_moments_of_store_writes_never_leaves_a_partial_baseline(tmp_path: Path) -> None:
    """A writer rewrites a 3,000-series baseline in a loop; it is killed with SIGKILL at 50 random
    moments. After each kill the store loads without error, holds one whole generation (every band
    from the same write, at least the last one the writer reported done) and no temp file survives
    a load."""
    import random
    import subprocess
    import sys
    import time

    rng = random.Random(20)
    mid_write = 0
    for trial in range(50):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        proc.stdout.readline()  # one whole write done: the kill lands in a later one
        time.sleep(rng.uniform(0.0, 0.5))
        proc.kill()
        done = [int(line) for line in proc.stdout.read().split()]
        proc.wait(timeout=10)
        mid_write += bool(list(tmp_path.glob("*/.state-*")))  # killed between the temp file and the rename
        states, errors = load_store(tmp_path)
        assert errors == [], f"trial {trial}: {errors}"
        loaded = states["qps"]
        generations = {float(b.yhat[0]) for b in loaded.series}
        assert len(loaded.series) == 3000 and generations == {loaded.fitted_at}, f"trial {trial}"
        assert loaded.fitted_at >= (done[-1] if done else 1), f"trial {trial}: an older file than the last written"
        assert not list(tmp_path.glob("*/.state-*")), f"trial {trial}: a temp file survived the load"
    assert mid_write >= 10, f"only {mid_write} of 50 kills landed inside a write: the test did not test it"


def test_the_collector_is_paused_only_while_a_baseline_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    path = save_baseline(tmp_path, state())
    seen: list[bool] = []
    parse = store.parse_state
    monkeypatch.setattr(store, "parse_state", lambda arrays: (seen.append(gc.isenabled()), parse(arrays))[1])
    assert len(load_baseline(path).series) == 3
    path.write_bytes(b"")
    with pytest.raises(StoreError):
        load_baseline(path)
    assert seen == [False] and gc.isenabled()  # back on, after an error too
