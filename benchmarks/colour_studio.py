"""Colour naming on generated studio product photos, per condition, beside the code before
issue 23 (loaded from git at `--before`), and issue 23's table of real-photo garments.

Each condition (`studio_testset.CONDITIONS`: warm and cool light, white and light-grey
backdrops with soft shadows, white on white, black on black, denim washes, prints, deep folds)
gets `--per-condition` items; an item is right when its first colour is accepted and, for a
print, the print's colour is among those named (`is_accepted`). The table's garments are
rendered so that the colour named comes out at the mean RGB the real photos gave.

Usage: python benchmarks/colour_studio.py [--per-condition 100] [--seed 0] [--before ec7c1e4]
Writes benchmarks/results/colour_studio.json and prints the tables.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from common import environment, save

from stylefinder.recognize import colours
from stylefinder.recognize.studio_testset import (
    CONDITIONS,
    TABLE_CASES,
    generate_studio_testset,
    is_accepted,
    render_table_case,
)

KERNELS = "src/stylefinder/recognize/_colour_kernels.py"
COLOURS = "src/stylefinder/recognize/colours.py"


def load_before(commit: str, folder: Path):
    """`recognize.colours` as it was at `commit`, imported as a package of its own."""
    package = folder / "colours_before"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for path, name in ((KERNELS, "_colour_kernels.py"), (COLOURS, "colours.py")):
        text = subprocess.run(
            ["git", "show", f"{commit}:{path}"], capture_output=True, text=True, check=True
        ).stdout
        text = text.replace(
            "from stylefinder.recognize import _colour_kernels", "from . import _colour_kernels"
        )
        (package / name).write_text(text)
    sys.path.insert(0, str(folder))
    return importlib.import_module("colours_before.colours")


def names_of(module, image) -> list[str]:
    return [c.name for c in module.dominant_colours(image)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-condition", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--before", default="ec7c1e4", help="git commit of the code before")
    parser.add_argument("--out", default="benchmarks/results/colour_studio.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        before = load_before(args.before, Path(tmp))
        versions = {"before": before, "now": colours}
        for module in versions.values():  # tables and kernels, untimed
            module.warm_up()
        samples = generate_studio_testset(args.per_condition, seed=args.seed)
        hits: dict[str, dict[str, list[bool]]] = {v: defaultdict(list) for v in versions}
        misses: dict[str, dict[str, list[str]]] = {v: defaultdict(list) for v in versions}
        seconds = dict.fromkeys(versions, 0.0)
        for sample in samples:
            for version, module in versions.items():
                started = time.perf_counter()
                names = names_of(module, sample.image)
                seconds[version] += time.perf_counter() - started
                right = is_accepted(sample, names)
                hits[version][sample.condition].append(right)
                if not right:
                    misses[version][sample.condition].append(f"{sample.label} -> {'+'.join(names)}")
        table = []
        for number, case in enumerate(TABLE_CASES):
            image = render_table_case(case, seed=number)
            row = {"garment": case.garment, "real photo rgb": list(case.rgb)}
            for version, module in versions.items():
                found = module.dominant_colours(image)
                names = [c.name for c in found]
                right = (
                    bool(names)
                    and names[0] in case.accepted
                    and (not case.print_accepted or any(n in case.print_accepted for n in names))
                )
                row[version] = {
                    "named": [[c.name, round(c.share, 2), list(c.rgb)] for c in found],
                    "right": right,
                }
            table.append(row)
    accuracy = {
        version: {c: round(sum(h[c]) / len(h[c]), 4) for c in CONDITIONS}
        for version, h in hits.items()
    }
    result = {
        **environment("numpy", "pillow"),
        "per_condition": args.per_condition,
        "seed": args.seed,
        "before": args.before,
        "accuracy": accuracy,
        "ms_per_image": {v: round(1000 * s / len(samples), 2) for v, s in seconds.items()},
        "misses": {v: {c: m[c][:12] for c in CONDITIONS if m[c]} for v, m in misses.items()},
        "table": table,
    }
    save(args.out, result)
    print(f"studio set: {args.per_condition} items per condition (seed {args.seed})")
    print(f"{'condition':<16} {'before':>7} {'now':>7}")
    for condition in CONDITIONS:
        before_rate, now_rate = accuracy["before"][condition], accuracy["now"][condition]
        print(f"{condition:<16} {before_rate:>7.3f} {now_rate:>7.3f}")
    print("ms per image:", result["ms_per_image"])
    print(f"\n{'garment':<34} {'before':<22} now")
    for row in table:
        shown = {
            v: "+".join(f"{n} {s:.0%}" for n, s, _ in row[v]["named"])
            + ("" if row[v]["right"] else " X")
            for v in versions
        }
        print(f"{row['garment']:<34} {shown['before']:<22} {shown['now']}")


if __name__ == "__main__":
    main()
