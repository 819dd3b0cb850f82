"""Commands that start a server: `app` (the Streamlit web app) and `serve` (the HTTP API)."""

from __future__ import annotations

import argparse


def start_app(args: argparse.Namespace) -> int:
    """`stylefinder app --index DIR`: run the Streamlit web app until stopped."""
    try:
        from stylefinder.app import run_app
    except ImportError as exc:
        raise ValueError(f"the web app needs: pip install 'stylefinder[app]' ({exc})") from exc
    return run_app(args.index, port=args.port, host=args.host, max_upload_mb=args.max_upload_mb)


def start_api(args: argparse.Namespace) -> int:
    """`stylefinder serve --index DIR`: run the HTTP API until stopped."""
    try:
        from stylefinder.serve import serve
    except ImportError as exc:
        raise ValueError(f"the API needs: pip install 'stylefinder[serve]' ({exc})") from exc
    print(f"stylefinder API: http://{args.host}:{args.port}/docs", flush=True)
    serve(
        args.index,
        host=args.host,
        port=args.port,
        workers=args.workers,
        admin_key_file=args.admin_key_file,
        read_key_file=args.read_key_file,
        max_upload_mb=args.max_upload_mb,
        request_timeout=args.timeout,
        feed=args.feed,
        feed_format=args.feed_format,
    )
    return 0
