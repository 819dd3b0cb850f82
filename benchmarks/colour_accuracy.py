"""Colour naming accuracy on a generated set of garment silhouettes in known colours.

One-colour items count as right when the first colour returned is theirs, two-colour items when
both their colours are among those returned (`dominant_colours` with max_colours=3,
min_share=0.1). Reports accuracy overall, per colour, backdrop, shape and pattern, the commonest
confusions, how often a one-colour item got a second colour, and milliseconds per image.

Usage: python benchmarks/colour_accuracy.py [--count 600] [--seed 0] [--two-colour-share 0.3]
Writes benchmarks/results/colour_accuracy.json and prints a table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import Counter, defaultdict

import numpy as np
from common import environment, save

from stylefinder.recognize.colour_testset import generate_colour_testset, is_correct
from stylefinder.recognize.colours import COLOUR_NAMES, dominant_colours


def rate(hits: list[bool]) -> float:
    return round(sum(hits) / len(hits), 4) if hits else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--two-colour-share", type=float, default=0.3)
    parser.add_argument("--max-colours", type=int, default=3)
    parser.add_argument("--min-share", type=float, default=0.1)
    parser.add_argument("--out", default="benchmarks/results/colour_accuracy.json")
    args = parser.parse_args()

    started = time.perf_counter()
    dominant_colours(np.zeros((8, 8), dtype=np.uint8))  # the first call builds a lookup table
    table_ms = (time.perf_counter() - started) * 1000
    samples = generate_colour_testset(
        args.count, seed=args.seed, two_colour_share=args.two_colour_share
    )

    hits: list[bool] = []
    by: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    confusions: Counter[str] = Counter()
    extra: list[bool] = []
    times: list[float] = []
    cpu_started = time.process_time()
    for sample in samples:
        started = time.perf_counter()
        found = dominant_colours(
            sample.image, max_colours=args.max_colours, min_share=args.min_share
        )
        times.append((time.perf_counter() - started) * 1000)
        names = [c.name for c in found]
        right = is_correct(sample, names)
        hits.append(right)
        kind = "one colour" if len(sample.colours) == 1 else "two colours"
        by["kind"][kind].append(right)
        by["background"][sample.background].append(right)
        by["shape"][sample.shape].append(right)
        by["pattern"][sample.pattern].append(right)
        if len(sample.colours) == 1:
            colour = sample.colours[0]
            by["colour"][colour].append(right)
            extra.append(len(names) > 1)
            if not right:
                confusions[f"{colour} -> {names[0] if names else 'nothing'}"] += 1
        else:
            for colour in sample.colours:
                by["colour"][colour].append(colour in names)
                if colour not in names:
                    confusions[f"{colour} (of two) missed, got {'+'.join(names)}"] += 1

    cpu_ms = (time.process_time() - cpu_started) * 1000 / len(samples)  # includes the scoring
    breakdown = {
        group: {key: {"accuracy": rate(v), "items": len(v)} for key, v in sorted(values.items())}
        for group, values in by.items()
    }
    breakdown["colour"] = {
        name: breakdown["colour"][name] for name in COLOUR_NAMES if name in breakdown["colour"]
    }
    result = {
        **environment("numpy", "pillow"),
        "count": args.count,
        "seed": args.seed,
        "two_colour_share": args.two_colour_share,
        "max_colours": args.max_colours,
        "min_share": args.min_share,
        "accuracy": rate(hits),
        "extra_colour_rate_one_colour_items": rate(extra),
        "ms_per_image": {
            "mean": round(statistics.fmean(times), 2),
            "median": round(statistics.median(times), 2),
            "p95": round(sorted(times)[int(0.95 * (len(times) - 1))], 2),
            "cpu_mean": round(cpu_ms, 2),
            "first_call_once": round(table_ms, 1),
            "load_average_1min": round(os.getloadavg()[0], 2),
        },
        "breakdown": breakdown,
        "confusions": dict(confusions.most_common()),
    }
    save(args.out, result)

    print(f"colour naming on {args.count} generated items (seed {args.seed})")
    print(f"accuracy {result['accuracy']:.3f}  (target >= 0.95)")
    for group in ("kind", "background", "colour", "shape", "pattern"):
        print(f"\n{group:<14} {'accuracy':>8} {'items':>6}")
        for key, row in breakdown[group].items():
            print(f"{key:<14} {row['accuracy']:>8.3f} {row['items']:>6}")
    print(
        f"\none-colour items given a second colour: {result['extra_colour_rate_one_colour_items']}"
    )
    ms = result["ms_per_image"]
    print(
        f"ms per image: mean {ms['mean']}, median {ms['median']}, p95 {ms['p95']}, CPU "
        f"{ms['cpu_mean']} (load average {ms['load_average_1min']}); "
        f"+ {ms['first_call_once']} ms once: the first call builds a lookup table"
    )
    print("confusions:", ", ".join(f"{k} x{v}" for k, v in confusions.most_common(10)) or "none")


if __name__ == "__main__":
    main()
