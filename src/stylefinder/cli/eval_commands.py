"""The `eval` command: retrieval quality of a labeled index, Fashion-MNIST, personalization."""

from __future__ import annotations

import argparse
import json
import sys


def evaluate(args: argparse.Namespace) -> int:
    """`stylefinder eval [index|fashion-mnist|personalization]`: print (and report) metrics."""
    from stylefinder.evaluate.retrieval import evaluate_index

    if args.target == "fashion-mnist":
        return _eval_fashion_mnist(args)
    if not args.index or not args.label_column:
        raise ValueError("eval needs --index and --label-column (or: eval fashion-mnist)")
    if args.target == "personalization":
        return _eval_personalization(args)

    try:
        ks = [int(k) for k in args.k.split(",") if k.strip()]
    except ValueError:
        raise ValueError(f"--k wants comma-separated integers, got {args.k!r}") from None
    if not ks or min(ks) < 1:
        raise ValueError("--k wants positive integers")
    title = args.title_column or _display_title(args.index)
    result = evaluate_index(
        args.index, label_column=args.label_column, ks=ks, raw=args.raw, title_column=title
    )
    if args.report:
        from stylefinder.evaluate.report import write_report

        write_report(result, args.report, index_dir=args.index, command=args.command_line)
    for warning in result.warnings:
        print(f"stylefinder: WARNING: {warning}", file=sys.stderr)
    if args.json:
        payload = {"items": result.items, "dim": result.dim, "tuned": result.tuned}
        payload.update(metrics=result.metrics, per_class=result.per_class)
        payload.update(text_metrics=result.text_metrics, title_column=result.title_column)
        payload.update(meaning_metrics=result.meaning_metrics)
        print(json.dumps({**payload, "warnings": result.warnings}, indent=2))
        return 0
    space = f"{result.dim}-d tuned space" if result.tuned else f"{result.dim}-d space"
    print(f"leave-one-out over {result.items:,} items labeled by {args.label_column!r} ({space}):")
    for name, value in result.metrics.items():
        print(f"  {name:<14} {value:.4f}")
    width = max(len(row["label"]) for row in result.per_class)
    print(f"\n  {'label':<{width}}  items  precision@5  top-1")
    for row in result.per_class:
        print(
            f"  {row['label']:<{width}}  {row['items']:>5}  {row.get('precision@5', 0):>11.3f}"
            f"  {row['top1_accuracy']:.3f}"
        )
    if result.text_metrics:
        print(
            f"\nfull-text search of {result.title_column!r} for each label's name "
            f"({result.text_metrics['queries']} queries):"
        )
        for name, value in result.text_metrics.items():
            if name != "queries":
                print(f"  {name:<14} {value:.4f}")
    if result.meaning_metrics:
        print(
            "\nsearch by meaning: each label's name as a prompt for the text tower "
            f"({result.meaning_metrics['queries']} queries):"
        )
        for name, value in result.meaning_metrics.items():
            if name != "queries":
                print(f"  {name:<18} {value:.4f}")
    if args.report:
        print(f"\nreport written to {args.report}/report.md")
    return 0


def _display_title(index: str) -> str | None:
    """The title column the index's display settings name (None when unset)."""
    from stylefinder.engine import Engine
    from stylefinder.recommend.display import read_display

    return read_display(Engine.open(index).view.state).title


def _eval_fashion_mnist(args: argparse.Namespace) -> int:
    from stylefinder.evaluate.fashion_mnist import evaluate_fashion_mnist

    print(f"Fashion-MNIST, {args.backbone} (embeddings are cached after the first run):")
    result = evaluate_fashion_mnist(
        args.backbone,
        held_out=args.held_out,
        epochs=args.epochs,
        limit=args.limit,
        report_dir=args.report,
        command=args.command_line,
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"\n{'configuration':<44} {'P@1':>6} {'P@5':>6} {'P@10':>6} {'mAP@10':>6}")
    for row in result["rows"]:
        print(
            f"{row['configuration']:<44} {row['precision@1']:>6.3f} {row['precision@5']:>6.3f} "
            f"{row['precision@10']:>6.3f} {row['mAP@10']:>6.3f}"
        )
    classifier, held = result["classifier"], result["held_out"]
    print(
        f"\nclassifier top-1 accuracy {classifier['top1_accuracy']:.4f} (top-3 "
        f"{classifier['top3_accuracy']:.4f}); held-out class {held['class']}: precision@5 raw "
        f"{held['raw']:.4f}, tuned without it {held['tuned_without_it']:.4f}"
    )
    if args.report:
        print(f"report written to {args.report}/report.md")
    return 0


def _eval_personalization(args: argparse.Namespace) -> int:
    from stylefinder.evaluate.personalization import evaluate_personalization

    result = evaluate_personalization(
        args.index,
        args.label_column,
        users=args.users,
        seed=args.seed,
        report_dir=args.report,
        command=args.command_line,
    )
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    metrics = ["hit_rate@10", "precision@10", "ndcg@10", "intra_list_diversity", "coverage"]
    print(f"{args.users} simulated shoppers on {args.index} ({args.label_column!r}):")
    print(f"{'method':<28}" + "".join(f"{m:>22}" for m in metrics))
    for name, row in result["methods"].items():
        print(f"{name:<28}" + "".join(f"{row.get(m, float('nan')):>22.3f}" for m in metrics))
    if args.report:
        print(f"report written to {args.report}/report.md")
    return 0
