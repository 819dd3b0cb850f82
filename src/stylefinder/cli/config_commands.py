"""The `config` commands: how an index's items are shown (title, price, link, facets)."""

from __future__ import annotations

import argparse
import json


def config_set(args: argparse.Namespace) -> int:
    """`stylefinder config set KEY=VALUE ... --index DIR|URL`: write display settings."""
    from stylefinder.recommend.display import parse_display_assignments, write_display

    settings = write_display(args.index, parse_display_assignments(args.assignments))
    print(f"display settings of {args.index}:")
    _print_display(settings.to_dict())
    return 0


def config_show(args: argparse.Namespace) -> int:
    """`stylefinder config show --index DIR|URL`: print the display settings."""
    from stylefinder.index.stores import open_store
    from stylefinder.recommend.display import facet_columns, read_display
    from stylefinder.recommend.views import open_view

    view = open_view(open_store(args.index))
    settings = read_display(view.state)
    shown = settings.to_dict()
    if settings.facets is None:
        shown["facets"] = f"auto: {', '.join(facet_columns(view.items, settings)) or 'none'}"
    if args.json:
        print(json.dumps(shown, indent=2, ensure_ascii=False))
    else:
        _print_display(shown)
    return 0


def _print_display(settings: dict) -> None:
    for key, value in settings.items():
        if isinstance(value, (list, tuple)):
            value = ", ".join(value) or "none"
        print(f"  {key:<7} {value if value is not None else '(unset)'}")
