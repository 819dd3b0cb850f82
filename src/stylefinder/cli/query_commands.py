"""Commands that read an index: recommend, search, recognize, info and backbones."""

from __future__ import annotations

import argparse
import json

from stylefinder.embed.registry import list_backbones


def recommend(args: argparse.Namespace) -> int:
    """`stylefinder recommend IMAGE|--item ID --index DIR`: the most similar items."""
    from stylefinder.engine import Engine
    from stylefinder.recommend.filters import parse_filters

    if (args.image is None) == (args.item is None):
        raise ValueError("give either an IMAGE or --item ID (not both)")
    filters = parse_filters(args.filter, "=")
    engine = Engine.open(args.index, weights=args.weights)
    if args.item is not None:
        results = engine.similar(args.item, k=args.k, filters=filters)
    else:
        results = engine.recommend(args.image, k=args.k, filters=filters)
    query = f"item {args.item}" if args.item else args.image
    return _print_results(results, f"most similar to {query}", as_json=args.json)


def search(args: argparse.Namespace) -> int:
    """`stylefinder search "WORDS" [--image PHOTO] --index DIR`: items matching words, a
    photo, or both."""
    from stylefinder.engine import Engine
    from stylefinder.recommend.filters import parse_filters

    if args.text is None and args.image is None:
        raise ValueError('give words to search for ("navy linen shirt"), --image PHOTO, or both')
    filters = parse_filters(args.filter, "=")
    engine = Engine.open(args.index, weights=args.weights)
    results = engine.search(
        args.text,
        args.image,
        args.k,
        filters=filters,
        text_weight=args.text_weight,
        expand=not args.no_expand,
    )
    query = " and ".join(repr(q) for q in (args.text, args.image) if q is not None)
    return _print_results(results, f"best matching {query}", as_json=args.json)


def _print_results(results, heading: str, *, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"results": [r.to_dict() for r in results]}, indent=2, ensure_ascii=False))
        return 0
    print(f"{len(results)} {heading}:")
    for rank, result in enumerate(results, 1):
        meta = ", ".join(f"{key}={value}" for key, value in result.metadata.items())
        print(f"{rank:>3}. {result.score:.3f}  {result.id}  {result.path}  {meta}".rstrip())
    return 0


def recognize(args: argparse.Namespace) -> int:
    """`stylefinder recognize IMAGE --index DIR`: garment category and colours."""
    from stylefinder.engine import Engine

    recognition = Engine.open(args.index).recognize(args.image)
    if args.json:
        print(json.dumps(recognition.to_dict(), indent=2))
        return 0
    top = ", ".join(f"{label} {p:.2f}" for label, p in recognition.categories)
    source = {
        "classifier": "the index's classifier",
        "zero-shot": "zero-shot prompts",
        "imagenet": "the ImageNet fallback",
    }
    print(f"category: {recognition.category}  ({top}; from {source[recognition.source]})")
    colours = ", ".join(f"{c.name} {c.share:.0%}" for c in recognition.colours)
    print(f"colours:  {colours or 'none found'}")
    if recognition.source != "classifier":
        print(
            f"note: without a tuned classifier the category is a rough guess "
            f"({source[recognition.source]}); "
            f"`stylefinder tune --index {args.index} --label-column COLUMN` learns categories "
            "from the shop's own labels"
        )
    return 0


def info(args: argparse.Namespace) -> int:
    """`stylefinder info --index DIR`: summarize an index."""
    from stylefinder.engine import Engine

    info = Engine.open(args.index).info()
    if args.json:
        print(json.dumps(info.to_dict(), indent=2, ensure_ascii=False))
        return 0
    facts = info.to_dict()
    columns, tuned = facts.pop("columns"), facts.pop("tuned")
    facts["size_bytes"] = f"{info.size_bytes:,} ({info.size_bytes / 1e6:.1f} MB)"
    facts["tuned"] = (
        f"yes, on {tuned['label_column']!r} ({tuned['dim']}-d, {tuned['trained_at']}"
        f"{', with a classifier' if tuned['classifier'] else ''})"
        if tuned
        else "no (`stylefinder tune --label-column COLUMN` learns from the shop's labels)"
    )
    if facts["restorable_generation"] is None:
        facts["restorable_generation"] = "none yet"
    facts["search"] = _describe_search(facts.pop("search"))
    width = max(len(key) for key in facts)
    for key, value in facts.items():
        print(f"{key.replace('_', ' '):<{width}}  {value}")
    if columns:
        name_width = max(len(c["name"]) for c in columns)
        print(f"\ncolumns:\n  {'name':<{name_width}}  kind      distinct  filled")
        for c in columns:
            print(
                f"  {c['name']:<{name_width}}  {c['kind']:<8}  {c['distinct']:>8,}  "
                f"{c['filled']:>6,}"
            )
    return 0


def _describe_search(params: dict) -> str:
    """One line on how searches find candidates, from `IndexInfo.search`."""
    if params.get("kind") != "hnsw":
        return "exact (every item scored; `stylefinder index --ann hnsw` builds a graph)"
    text = (
        f"hnsw graph ({params.get('library', 'faiss')}, {params.get('codes', 'int8')} codes, "
        f"degree {params.get('degree')}, search width {params.get('search_width')}, "
        f"{params.get('rescore', params.get('search_width'))} candidates rescored"
    )
    if params.get("recall_at_10") is not None:
        text += f": recall@10 {params['recall_at_10']} on {params.get('queries')} queries"
    text += f"; {params.get('nodes', 0):,} nodes"
    if params.get("tombstones"):
        text += f", {params['tombstones']:,} removed"
    if params.get("uncovered"):
        text += f", {params['uncovered']:,} added rows scored exactly"
    return text + ")"


def backbones(args: argparse.Namespace) -> int:
    """`stylefinder backbones`: list the available backbones."""
    for spec in list_backbones():
        prep = spec.preprocessing
        print(
            f"{spec.name:<20} {spec.dim:>5}-d  {prep.input_size}px  "
            f"{spec.default_pooling:<4} {spec.description}"
        )
    return 0
