"""Commands about shoppers: `user event|import|delete` and `for-user`."""

from __future__ import annotations

import argparse
import json


def user_event(args: argparse.Namespace) -> int:
    """`stylefinder user event USER ITEM --kind KIND --index DIR`: record one event."""
    from stylefinder.engine import Engine

    event = Engine.open(args.index).record_event(
        args.user_id, args.item_id, args.kind, timestamp=args.time, weight=args.weight
    )
    print(f"recorded: {event.user_id} {event.kind} {event.item_id} at {event.time}")
    return 0


def user_import(args: argparse.Namespace) -> int:
    """`stylefinder user import CSV --index DIR`: import events, listing rejected lines."""
    from stylefinder.engine import Engine

    summary = Engine.open(args.index).import_events(args.csv)
    print(f"imported {summary.added} events, rejected {summary.rejected_total}")
    for line, reason in summary.rejected[:50]:
        print(f"  line {line}: {reason}")
    return 0


def user_delete(args: argparse.Namespace) -> int:
    """`stylefinder user delete USER --index DIR`: erase every trace of a user."""
    from stylefinder.engine import Engine

    removed = Engine.open(args.index).events.delete_user(args.user_id)
    print(f"deleted user {args.user_id}: {removed['events']} events")
    return 0


def for_user(args: argparse.Namespace) -> int:
    """`stylefinder for-user USER --index DIR`: personalized recommendations."""
    from stylefinder.engine import Engine
    from stylefinder.recommend.filters import parse_filters

    engine = Engine.open(args.index)
    results = engine.recommend_for_user(
        args.user_id, k=args.k, filters=parse_filters(args.filter, "="), diversity=args.diversity
    )
    if args.json:
        print(json.dumps({"results": [r.to_dict() for r in results]}, indent=2, ensure_ascii=False))
        return 0
    known = engine.events.has_user(args.user_id)
    print(f"{len(results)} for {args.user_id}" + ("" if known else " (new shopper: popular items)"))
    for rank, result in enumerate(results, 1):
        meta = ", ".join(f"{key}={value}" for key, value in result.metadata.items())
        print(f"{rank:>3}. {result.score:.3f}  {result.id}  {meta}".rstrip())
    return 0
