"""Start-up cost of the command line, each command a fresh process: a cold `stylefinder
recommend PHOTO --index DIR`, and `stylefinder index` of 1 and of 100 demo images into a new
index (the 1-image run is the fixed start-up), once the backbone's ONNX graph is exported.
The first run in an empty cache, which loads PyTorch to export the graph, the first run
after an install (numba's cache empty too: the colour kernels compile), and a bare
`import torch` are timed beside them, in the same run.

Usage: python benchmarks/startup.py [--repeats 3]
Writes benchmarks/results/startup.json and prints the figures (seconds, median of repeats).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import environment, save

STYLEFINDER = [sys.executable, "-m", "stylefinder.cli"]


def timed(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/startup.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {**os.environ, "STYLEFINDER_CACHE": str(root / "cache")}
        subprocess.run(
            [*STYLEFINDER, "demo-data", str(root / "demo"), "--queries", str(root / "q")],
            env=env,
            check=True,
            capture_output=True,
        )
        images = sorted((root / "demo" / "images").iterdir())
        for count in (1, 100):
            (root / f"c{count}" / "images").mkdir(parents=True)
            for path in images[:count]:
                shutil.copy2(path, root / f"c{count}" / "images" / path.name)

        def index(count: int, name: str) -> float:
            folder = root / name
            shutil.rmtree(folder, ignore_errors=True)
            return timed(
                [*STYLEFINDER, "index", str(root / f"c{count}"), "--index", str(folder)], env
            )

        fresh_env = {**env, "STYLEFINDER_CACHE": str(root / "cache-fresh")}
        fresh_env["NUMBA_CACHE_DIR"] = str(root / "numba")  # nothing compiled yet either
        fresh = timed(
            [*STYLEFINDER, "index", str(root / "c1"), "--index", str(root / "f")], fresh_env
        )
        first = index(1, "first")  # an empty cache: torch loads the weights and exports
        fixed = [index(1, f"one-{n}") for n in range(args.repeats)]
        hundred = [index(100, f"hundred-{n}") for n in range(args.repeats)]
        photo = sorted((root / "q").iterdir())[0]
        query = [STYLEFINDER[0], "-m", "stylefinder.cli", "recommend", str(photo)]
        recommend = [timed([*query, "--index", str(root / "hundred-0")], env) for _ in range(3)]
        torch_import = timed([sys.executable, "-c", "import torch"], env)
    result = {
        **environment("onnxruntime", "torch"),
        "repeats": args.repeats,
        "seconds": {
            "recommend_cold": round(statistics.median(recommend), 2),
            "index_1_image": round(statistics.median(fixed), 2),
            "index_100_images": round(statistics.median(hundred), 2),
            "index_1_image_empty_cache": round(first, 2),
            "index_1_image_fresh_install": round(fresh, 2),
            "import_torch": round(torch_import, 2),
        },
        "before (issue 18)": {"recommend_cold": 4.2, "index_100_jpegs": 7.6, "fixed_startup": 6.0},
    }
    save(args.out, result)
    print(result["seconds"])


if __name__ == "__main__":
    main()
