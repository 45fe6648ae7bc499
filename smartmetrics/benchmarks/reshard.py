"""Resharding: how many series change daemon when a deployment goes from N to N+1 shards.

Builds synthetic series of an inference platform (baselines qps, latency, errors and GPU load; label
sets of tenant, model, version, region and pod), gives each its owner with `engine.shards` at every
shard count, and counts the series that moved for each step N -> N+1: the fraction against the ideal
1/(N+1) and the target 1.2/(N+1), and how many moved between two old shards (rendezvous hashing moves
none: only the new shard takes series). On a sample it also asks every daemon, as the daemon does
(`config.Sharding.owns_key`), whether it owns each series: exactly one must say yes, the one the count
used. Exits non-zero if a step moves more than the target or any check fails.

    python -m smartmetrics.benchmarks.reshard [--series 300000] [--steps 3,4,9] [--check-series 20000]
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass

from smartmetrics.config import Sharding
from smartmetrics.engine.series import labels_key
from smartmetrics.engine.shards import owner_of_key

BASELINES = ("qps", "latency_p99", "errors", "gpu_util")
TENANTS = 40
MODELS = ("llama-3-8b", "llama-3-70b", "mistral-7b", "mixtral-8x7b", "bert-base", "whisper-large",
          "sdxl", "t5-xl", "clip-vit", "resnet-50", "gpt-j-6b", "phi-3-mini")
REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1")


@dataclass(frozen=True)
class Moves:
    """What a step N -> N+1 did: series that changed owner, and how many of them went to an old shard."""

    series: int
    moved: int
    between_old: int

    @property
    def fraction(self) -> float:
        return self.moved / self.series if self.series else 0.0


def label_sets(n: int, seed: int = 0) -> list[tuple[str, dict[str, str]]]:
    """`n` distinct (baseline, labels) pairs shaped like an inference fleet's series, seeded."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        model = MODELS[rng.randrange(len(MODELS))]
        pod = f"{model}-{rng.getrandbits(32):08x}-{rng.getrandbits(20):05x}"
        labels = {"namespace": f"tenant-{rng.randrange(TENANTS):02d}", "model": model,
                  "version": f"v{rng.randrange(1, 9)}", "region": REGIONS[rng.randrange(len(REGIONS))],
                  "pod": pod, "instance": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}:8080"}
        out.append((BASELINES[i % len(BASELINES)], labels))
    return out


def owners(keys: list[tuple[str, str]], shards: int) -> list[int]:
    """The owning shard of each (baseline, labels key) among `shards`."""
    return [owner_of_key(alias, key, shards) for alias, key in keys]


def count_moves(before: list[int], after: list[int], new_shard: int) -> Moves:
    """The series whose owner differs between two assignments, and those that did not go to `new_shard`.

    >>> count_moves([0, 1, 2, 0], [0, 3, 2, 1], new_shard=3)
    Moves(series=4, moved=2, between_old=1)
    """
    moved = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    return Moves(len(before), len(moved), sum(b != new_shard for _, b in moved))


def misowned(keys: list[tuple[str, str]], assigned: list[int], shards: int) -> int:
    """How many series do not have exactly one daemon saying it owns them, that daemon `assigned`'s."""
    daemons = [Sharding(shard=s, shards=shards) for s in range(shards)]
    bad = 0
    for (alias, key), expected in zip(keys, assigned, strict=True):
        claim = [d.shard for d in daemons if d.owns_key(alias, key)]
        bad += claim != [expected]
    return bad


def main(argv: list[str] | None = None) -> int:
    """Print, for each step N -> N+1, the series moved against 1/(N+1) and the target; 1 if one fails."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=300_000)
    parser.add_argument("--steps", default="3,4,9", help="shard counts N, each measured going to N+1")
    parser.add_argument("--check-series", type=int, default=20_000,
                        help="series on which every daemon is asked whether it owns them")
    parser.add_argument("--target", type=float, default=1.2, help="at most TARGET/(N+1) of the series move")
    args = parser.parse_args(argv)
    steps = [int(s) for s in args.steps.split(",") if s]
    start = time.perf_counter()
    keys = [(alias, labels_key(labels)) for alias, labels in label_sets(args.series)]
    counts = sorted({n for s in steps for n in (s, s + 1)})
    assigned = {n: owners(keys, n) for n in counts}
    stride = max(1, len(keys) // max(1, args.check_series))
    sample = slice(0, None, stride)
    print(f"{len(keys):,} synthetic series of {len(BASELINES)} baselines (tenant, model, version, region, pod); "
          f"owners by rendezvous hashing at {', '.join(map(str, counts))} shards in "
          f"{time.perf_counter() - start:.1f}s")
    ok = True
    for n in counts:
        bad = misowned(keys[sample], assigned[n][sample], n)
        shares = [assigned[n].count(s) for s in range(n)]
        print(f"  {n:>2} shards: series per shard {min(shares):,}-{max(shares):,} (even: {len(keys) / n:,.0f}); "
              f"exactly one daemon owns each of {len(keys[sample]):,} sampled series: "
              f"{'yes' if bad == 0 else f'NO ({bad} not)'}")
        ok &= bad == 0 and sum(shares) == len(keys)
    for n in steps:
        moves = count_moves(assigned[n], assigned[n + 1], new_shard=n)
        limit = args.target / (n + 1)
        passed = moves.fraction <= limit and moves.between_old == 0
        print(f"  {n:>2} -> {n + 1:<2}: {moves.moved:,} of {moves.series:,} series moved ({moves.fraction:.2%}; "
              f"1/(N+1) = {1 / (n + 1):.2%}, target <= {limit:.2%}), {moves.between_old} between old shards: "
              f"{'ok' if passed else 'FAILED'}")
        ok &= passed
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
