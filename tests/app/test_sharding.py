"""Sharded daemons: every series is fitted and exported by exactly one of them, for any number of
shards; a change of the shard count moves few series; a restarted daemon lets go of the series that
moved. The daemons read a real Prometheus (backfilled history)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from smartmetrics.app.promlocal import LocalPrometheus, MetricSeries, free_port
from smartmetrics.config import ConfigError, parse_config
from smartmetrics.engine.series import align_down, labels_key
from smartmetrics.engine.shards import owner

SERIES = 24


def test_every_series_has_one_owner_and_shares_are_even() -> None:
    keys = [{"model": f"m{i % 97}", "tenant": f"t{i}"} for i in range(20_000)]
    for shards in (1, 2, 3, 5, 8):
        counts = Counter(owner("qps", k, shards) for k in keys)
        assert set(counts) == set(range(shards))
        assert max(counts.values()) / min(counts.values()) < 1.15  # within a few percent of 1/shards each


@pytest.mark.parametrize("shards", [1, 2, 3, 4, 7])
def test_adding_a_shard_moves_only_the_new_shards_share(shards: int) -> None:
    keys = [{"service": f"s{i}", "instance": f"10.0.{i % 250}.{i // 250}"} for i in range(20_000)]
    before = [owner("latency", k, shards) for k in keys]
    after = [owner("latency", k, shards + 1) for k in keys]
    moved = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert len(moved) / len(keys) <= 1.2 / (shards + 1)
    assert all(b == shards for _, b in moved)  # only to the new shard, never between the old ones


def test_the_shard_is_part_of_the_hash_key_per_baseline() -> None:
    keys = [{"tenant": f"t{i}"} for i in range(2000)]
    same = sum(owner("a", k, 4) == owner("b", k, 4) for k in keys)
    assert 350 < same < 650  # independent across baselines: about a quarter agree


def test_shard_auto_takes_the_pod_ordinal_and_errors_name_the_field(monkeypatch) -> None:
    base = {"sources": {"p": {"url": "http://x:9090"}}, "baselines": {"b": {"expr": "up"}}}
    monkeypatch.setenv("HOSTNAME", "smartmetrics-2")
    assert parse_config({**base, "sharding": {"shard": "auto", "shards": 3}}).sharding.shard == 2
    monkeypatch.setenv("HOSTNAME", "laptop")
    with pytest.raises(ConfigError, match=r"sharding\.shard.*auto needs a host name ending in -<ordinal>"):
        parse_config({**base, "sharding": {"shard": "auto", "shards": 3}})
    monkeypatch.setenv("HOSTNAME", "smartmetrics-3")
    with pytest.raises(ConfigError, match="shard 3 must be below shards 3"):
        parse_config({**base, "sharding": {"shard": "auto", "shards": 3}})


def history(end: int) -> list[MetricSeries]:
    ts = np.arange(end - 3 * 86400, end + 1, 300, dtype=np.int64)
    rng = np.random.default_rng(3)
    daily = np.sin(2 * np.pi * (ts % 86400) / 86400)
    return [MetricSeries("shard_qps", {"model": f"m{i % 5}", "tenant": f"t{i}"}, ts,
                         50 + i + 10 * daily + rng.normal(0, 1, len(ts))) for i in range(SERIES)]


@pytest.fixture(scope="module")
def prom(prometheus_binaries) -> Iterator[LocalPrometheus]:
    with LocalPrometheus(history(align_down(time.time(), 300))) as p:
        yield p


def daemon_for(root: Path, url: str, shard: int, shards: int):
    from smartmetrics.app.daemon import Daemon

    root.mkdir(parents=True, exist_ok=True)
    config = root / f"shard{shard}.yaml"
    config.write_text(yaml.safe_dump({
        "sources": {"prom": {"url": url}},
        "baselines": {"qps": {"expr": "shard_qps", "step": "5m", "history": "3d"}},
        "store": {"path": str(root / f"store{shard}")},  # each daemon its own volume, as in a StatefulSet
        "server": {"listen": f"127.0.0.1:{free_port()}"},
        "sharding": {"shard": shard, "shards": shards},
    }))
    daemon = Daemon(str(config), workers=1)
    daemon._pool.close()
    daemon._pool = None  # fits in process: this is about who fits what, not speed
    daemon.load()
    return daemon


def exported(daemon) -> set[str]:
    """Series keys of the daemon's `smartmetrics_yhat_upper` lines on /metrics."""
    keys = set()
    for labels, *_ in daemon._snapshot.values_at(time.time()):
        assert labels.pop("baseline") == "qps"
        keys.add(labels_key(labels))
    return keys


def test_sharded_daemons_fit_and_export_every_series_exactly_once(prom, tmp_path: Path) -> None:
    everything = {labels_key(s.labels) for s in history(0)}
    for shards in (1, 3):
        root = tmp_path / f"n{shards}"
        daemons = [daemon_for(root, prom.url, i, shards) for i in range(shards)]
        for d in daemons:
            outcome = d.retrain()[0]
            assert outcome.error is None and outcome.fitted == outcome.fetched > 0
        shares = [exported(d) for d in daemons]
        assert sum(len(s) for s in shares) == len(everything)  # no series twice
        assert set().union(*shares) == everything  # and none missed
        for i, d in enumerate(daemons):
            text = d.metrics_text().decode()
            assert f'smartmetrics_owned_series{{baseline="qps"}} {float(len(shares[i]))}' in text
            assert f'smartmetrics_shard_info{{shard="{i}",shards="{shards}"}} 1.0' in text

    # three shards become four: on restart each keeps only what it still owns; the new one fits the rest
    root = tmp_path / "n3"
    old = {i: exported(daemon_for(root, prom.url, i, 3)) for i in range(3)}
    four = [daemon_for(root, prom.url, i, 4) for i in range(4)]
    kept = [exported(d) for d in four[:3]]
    for i in range(3):
        assert kept[i] <= old[i]
    assert not exported(four[3])
    four[3].retrain()
    shares = kept + [exported(four[3])]
    assert set().union(*shares) == everything and sum(len(s) for s in shares) == len(everything)
    assert len(shares[3]) <= 1.2 / 4 * len(everything) + 3  # 24 series: a few either way


def test_sharding_by_baseline_gives_each_baseline_whole_to_one_daemon(tmp_path: Path) -> None:
    from smartmetrics.app.daemon import Daemon

    aliases = [f"b{i}" for i in range(30)]
    owned = []
    for shard in range(3):
        config = tmp_path / f"c{shard}.yaml"
        config.write_text(yaml.safe_dump({
            "sources": {"prom": {"url": "http://127.0.0.1:9"}},
            "baselines": {a: {"expr": f'up{{job="{a}"}}'} for a in aliases},
            "store": {"path": str(tmp_path / f"s{shard}")},
            "sharding": {"shard": shard, "shards": 3, "by": "baseline"},
        }))
        daemon = Daemon(str(config), workers=1)
        daemon._pool.close()
        owned.append(set(daemon.config.baselines))
        for alias in daemon.config.baselines:  # a daemon keeps every series of the baselines it owns
            assert daemon.config.sharding.owns(alias, {"job": alias, "instance": "x"})
    assert sorted(a for share in owned for a in share) == sorted(aliases)  # each baseline exactly once
    assert all(5 <= len(share) <= 15 for share in owned)
