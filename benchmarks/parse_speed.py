"""Benchmark: parsing + checking + compiling aristotle.crit, warm, against a cold (fresh parser) baseline.

    python benchmarks/parse_speed.py [--repeat 50]

Warm is what `crit run` pays per file once the lark parser is built; the cold
figure rebuilds the LALR tables every time, the naive way.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from crit.engine.eligibility import check_source
from crit.grammar import parse

ROOT = Path(__file__).resolve().parent.parent


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", default=str(ROOT / "criteria" / "aristotle.crit"))
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args()
    text = Path(args.file).read_text()

    def cold() -> None:
        parse.parser.cache_clear()
        assert check_source(text, args.file).plan is not None

    def warm() -> None:
        assert check_source(text, args.file).plan is not None

    cold_times = timed(cold, max(5, args.repeat // 5))
    warm()  # build the parser once
    warm_times = timed(warm, args.repeat)
    c, w = statistics.median(cold_times), statistics.median(warm_times)
    print(f"{Path(args.file).name}: {len(text.splitlines())} lines")
    print(f"cold (parser rebuilt each time): median {c * 1000:7.1f} ms")
    print(f"warm (parser built once):        median {w * 1000:7.1f} ms   p95 {sorted(warm_times)[int(0.95 * len(warm_times)) - 1] * 1000:.1f} ms")
    print(f"ratio cold/warm: {c / w:.1f}x   target: warm well under 100 ms")


if __name__ == "__main__":
    main()
