"""The resharding benchmark counts moved series right and fails when a step moves more than its target."""

from __future__ import annotations

import pytest

from smartmetrics.benchmarks.reshard import count_moves, label_sets, main, misowned, owners


def test_moves_are_counted_and_those_between_old_shards_told_apart() -> None:
    moves = count_moves([0, 1, 2, 0, 1], [3, 1, 0, 0, 3], new_shard=3)
    assert (moves.series, moves.moved, moves.between_old) == (5, 3, 1)
    assert moves.fraction == pytest.approx(0.6)


def test_label_sets_are_distinct_and_seeded() -> None:
    sets = label_sets(500)
    assert len({(alias, tuple(sorted(labels.items()))) for alias, labels in sets}) == 500
    assert sets == label_sets(500)


def test_a_wrong_owner_is_caught() -> None:
    keys = [("qps", f"{i:016x}") for i in range(30)]
    right = owners(keys, 3)
    assert misowned(keys, right, 3) == 0
    assert misowned(keys, [(s + 1) % 3 for s in right], 3) == 30


def test_the_benchmark_passes_at_the_target_and_fails_beyond_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--series", "2000", "--steps", "3", "--check-series", "500"]) == 0
    out = capsys.readouterr().out
    assert "3 -> 4" in out and "0 between old shards: ok" in out
    assert "exactly one daemon owns each of 500 sampled series: yes" in out
    assert main(["--series", "2000", "--steps", "3", "--target", "0.5"]) == 1  # ~25% moved, 12.5% allowed
    assert "FAILED" in capsys.readouterr().out
