"""Ask the demo index for the 5 items most like each held-out query photo; summarize.

Usage: python benchmarks/demo_queries.py --index .demo/index --queries .demo/queries
The query photos come from Fashion-MNIST's training set; the catalog is its test set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stylefinder import Engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--queries", required=True)
    parser.add_argument("-k", type=int, default=5)
    args = parser.parse_args()
    engine = Engine.open(args.index)
    files = sorted(Path(args.queries).glob("*.png"))
    all_right, shares = 0, []
    print(f"\n{'query photo':<22} results' categories (k={args.k})")
    for path in files:
        truth = _category_of(path, engine)
        results = engine.recommend(path, k=args.k)
        cats = [r.metadata.get("category", "?") for r in results]
        right = sum(c == truth for c in cats)
        shares.append(right / len(cats))
        all_right += right == len(cats)
        print(f"{path.name:<22} {right}/{len(cats)}  {', '.join(cats)}")
    print(
        f"\n{all_right} of {len(files)} held-out queries got all {args.k} results in their own "
        f"category; mean precision@{args.k} = {sum(shares) / len(shares):.3f}"
    )


def _category_of(path: Path, engine: Engine) -> str:
    slug = path.stem.rsplit("-", 1)[0]
    for item in engine.snapshot.items:
        category = item.metadata.get("category", "")
        if category.replace("/", "-").replace(" ", "-").lower() == slug:
            return category
    raise SystemExit(f"{path.name}: no catalog category matches {slug!r}")


if __name__ == "__main__":
    main()
