"""The ImageNet-head garment fallback on Fashion-MNIST: top-1/top-3 accuracy, 'unknown' share,
per-class accuracy and confusion matrix, plus how often non-garment images are called garments
at each 'unknown' threshold (the measurement behind `DEFAULT_MIN_MASS`).

Usage: python benchmarks/imagenet_fallback.py [--limit 1000] [--inverted] [--cache FILE]
       [--int8-head]   (categories from the int8 graph's own head, which stylefinder does not
                        use: an int8 embedder takes them from the float graph)
Needs the Debian package dataset-fashion-mnist (or internet). The 10,000 test images are
classified as the demo catalog stores them (dark garment on white); `--inverted` also runs the
original white-on-black images for comparison. About 10 minutes for 10k on 2 busy cores, twice
that with --inverted.
Writes benchmarks/results/imagenet_fallback.json and prints a table.

The non-garment images are made here: plain colours, noise, gradients and shapes; letters and
digits drawn at 28x28 like Fashion-MNIST; photos shipped with scikit-image and matplotlib (when
installed) at full size and shrunk to 28x28 greyscale. Photos of people (who wear clothes) are
reported apart and left out of the rejection rate.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import environment, save
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from stylefinder.catalog.demo import CLASS_NAMES, load_fashion_mnist
from stylefinder.embed.load import load_embedder
from stylefinder.embed.onnx import OnnxEmbedder
from stylefinder.embed.preprocess import to_input
from stylefinder.recognize.taxonomy import (
    DEFAULT_MIN_MASS,
    TAXONOMY,
    UNKNOWN,
    category_mass,
    predict_garments,
)

#: Fashion-MNIST class -> taxonomy category.
FMNIST_TO_TAXONOMY = {
    "T-shirt/top": "top",
    "Trouser": "trousers/jeans",
    "Pullover": "sweater",
    "Dress": "dress",
    "Coat": "coat/jacket",
    "Sandal": "sandals",
    "Shirt": "shirt",
    "Sneaker": "shoes",
    "Bag": "bag",
    "Ankle boot": "boots",
}
THRESHOLDS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6)
PEOPLE = ("astronaut", "camera", "grace_hopper")


def classify_images(
    embedder: OnnxEmbedder, images: list[Image.Image], label: str, int8_head: bool = False
) -> np.ndarray:
    """ImageNet probabilities (N, 1000) of PIL images, preprocessed and run in chunks."""
    prep = embedder.spec.preprocessing
    out = []
    started = time.perf_counter()
    for start in range(0, len(images), 512):
        batch = np.stack([to_input(image, prep) for image in images[start : start + 512]])
        if int8_head:  # the quantized graph's second output, which `_split` leaves out
            out.append(embedder._session.run(None, {"pixels": batch})[1])
        else:
            out.append(embedder.classify_inputs(batch))
        done = start + len(batch)
        rate = done / (time.perf_counter() - started)
        print(f"\r{label}: {done:,}/{len(images):,} ({rate:.1f} img/s)", end="", flush=True)
    print()
    return np.concatenate(out)


def negative_images() -> dict[str, list[tuple[str, Image.Image]]]:
    """Non-garment images by kind (and photos of people apart), as (name, RGB image) pairs."""
    rng = np.random.default_rng(0)
    kinds: dict[str, list[tuple[str, Image.Image]]] = {"synthetic": [], "glyphs28": []}
    synthetic = kinds["synthetic"]
    for colour in ("white", "black", "grey", "red", "green", "blue", "yellow", "beige"):
        synthetic.append((f"plain-{colour}", Image.new("RGB", (224, 224), colour)))
    for i in range(6):
        noise = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
        synthetic.append((f"noise-{i}", Image.fromarray(noise)))
        blurred = Image.fromarray(noise).filter(ImageFilter.GaussianBlur(4 + 2 * i))
        synthetic.append((f"blurred-noise-{i}", blurred))
    ramp = np.linspace(0, 255, 224, dtype=np.uint8)
    synthetic.append(("gradient-h", Image.fromarray(np.tile(ramp, (224, 1))).convert("RGB")))
    synthetic.append(
        ("gradient-v", Image.fromarray(np.tile(ramp[:, None], (1, 224))).convert("RGB"))
    )
    for shape in ("ellipse", "rectangle", "triangle"):
        for colour in ("black", "red", "navy", "grey"):
            image = Image.new("RGB", (224, 224), "white")
            draw = ImageDraw.Draw(image)
            box = (40, 50, 184, 174)
            if shape == "triangle":
                draw.polygon([(112, 40), (190, 184), (34, 184)], fill=colour)
            else:
                getattr(draw, shape)(box, fill=colour)
            synthetic.append((f"{shape}-{colour}", image))
    for size in (22, 16):
        font = ImageFont.load_default(size=size)
        for char in "0123456789ABCDEFGHJKLMNPRSTUVWXYZ":
            glyph = Image.new("L", (28, 28), 255)
            ImageDraw.Draw(glyph).text((14, 14), char, fill=0, font=font, anchor="mm")
            kinds["glyphs28"].append((f"glyph-{char}-{size}", glyph.convert("RGB")))
    photos = _sample_photos()
    kinds["photos"] = [(n, im) for n, im in photos if n not in PEOPLE]
    kinds["photos28"] = [
        (f"{n}-28-{k}", crop) for n, im in kinds["photos"] for k, crop in enumerate(_small(im, rng))
    ]
    kinds["people"] = [(n, im) for n, im in photos if n in PEOPLE]
    return kinds


def _sample_photos() -> list[tuple[str, Image.Image]]:
    """Photos shipped with scikit-image and matplotlib, where they are installed."""
    photos = []
    try:
        import skimage.data
    except ImportError:
        skimage = None
    if skimage is not None:
        for name in (
            "astronaut",
            "camera",
            "brick",
            "cell",
            "chelsea",
            "clock",
            "coffee",
            "coins",
            "colorwheel",
            "grass",
            "gravel",
            "horse",
            "hubble_deep_field",
            "immunohistochemistry",
            "microaneurysms",
            "moon",
            "page",
            "retina",
            "rocket",
            "text",
        ):
            pixels = np.asarray(getattr(skimage.data, name)())
            if pixels.dtype == bool:
                pixels = np.where(pixels, 0, 255).astype(np.uint8)
            photos.append((name, Image.fromarray(pixels).convert("RGB")))
    try:
        from matplotlib import cbook
    except ImportError:
        return photos
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png"):
        with cbook.get_sample_data(name) as f:
            image = Image.open(f)
            if image.mode in ("RGBA", "LA", "P"):
                image = image.convert("RGBA")
                backdrop = Image.new("RGBA", image.size, "white")
                image = Image.alpha_composite(backdrop, image)
            photos.append((name.split(".")[0], image.convert("RGB")))
    return photos


def _small(image: Image.Image, rng: np.random.Generator, count: int = 6) -> list[Image.Image]:
    """A photo as 28x28 greyscale images like Fashion-MNIST's: the whole, then random crops."""
    grey = image.convert("L")
    out = [grey]
    for _ in range(count - 1):
        side = int(min(grey.size) * rng.uniform(0.3, 0.7))
        left = int(rng.integers(0, grey.width - side + 1))
        top = int(rng.integers(0, grey.height - side + 1))
        out.append(grey.crop((left, top, left + side, top + side)))
    return [im.resize((28, 28), Image.BILINEAR).convert("RGB") for im in out]


def fmnist_metrics(probs: np.ndarray, labels: np.ndarray, min_mass: float) -> dict:
    """Accuracy of the fallback against Fashion-MNIST labels mapped to the taxonomy."""
    truth = [FMNIST_TO_TAXONOMY[CLASS_NAMES[int(y)]] for y in labels]
    predictions = predict_garments(probs, top=3, min_mass=min_mass)
    top1 = np.array([p[0][0] == t for p, t in zip(predictions, truth, strict=True)])
    top3 = np.array([t in [c for c, _ in p] for p, t in zip(predictions, truth, strict=True)])
    unknown = np.array([p[0][0] == UNKNOWN for p in predictions])
    columns = [*TAXONOMY, UNKNOWN]
    confusion = np.zeros((len(CLASS_NAMES), len(columns)), np.int64)
    for y, p in zip(labels, predictions, strict=True):
        confusion[int(y), columns.index(p[0][0])] += 1
    mass = category_mass(probs)
    argmax_top1 = np.array(
        [TAXONOMY[j] == t for j, t in zip(mass.argmax(axis=1), truth, strict=True)]
    )
    per_class = {
        name: {
            "category": FMNIST_TO_TAXONOMY[name],
            "top1": float(top1[labels == c].mean()),
            "top3": float(top3[labels == c].mean()),
            "unknown": float(unknown[labels == c].mean()),
        }
        for c, name in enumerate(CLASS_NAMES)
    }
    kept = ~unknown
    return {
        "min_mass": min_mass,
        "images": len(labels),
        "top1": float(top1.mean()),
        "top3": float(top3.mean()),
        "unknown_share": float(unknown.mean()),
        "top1_of_answered": float(top1[kept].mean()) if kept.any() else None,
        "top1_without_unknown_rule": float(argmax_top1.mean()),
        "garment_mass_median": float(np.median(mass.sum(axis=1))),
        "per_class": per_class,
        "confusion": {
            "rows": list(CLASS_NAMES),
            "columns": columns,
            "counts": confusion.tolist(),
        },
    }


def threshold_sweep(fmnist: np.ndarray, labels: np.ndarray, negatives: dict) -> list[dict]:
    """For each threshold: Fashion-MNIST accuracy and answered share, and the share of each
    kind of non-garment image that is (wrongly) given a garment category."""
    rows = []
    fmnist_mass = category_mass(fmnist).sum(axis=1)
    for threshold in THRESHOLDS:
        metrics = fmnist_metrics(fmnist, labels, threshold)
        row = {
            "min_mass": threshold,
            "fmnist_top1": metrics["top1"],
            "fmnist_answered": float(_answered(fmnist_mass, threshold).mean()),
            "fmnist_top1_of_answered": metrics["top1_of_answered"],
        }
        for kind, probs in negatives.items():
            mass = category_mass(probs).sum(axis=1)
            row[f"{kind}_called_garment"] = float(_answered(mass, threshold).mean())
        rows.append(row)
    return rows


def _answered(mass: np.ndarray, threshold: float) -> np.ndarray:
    """Which garment masses get a category rather than 'unknown' (as in `predict_garments`)."""
    return (mass >= threshold) & (mass > 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--limit", type=int, help="only the first N test images")
    parser.add_argument("--inverted", action="store_true", help="also run white-on-black")
    parser.add_argument("--min-mass", type=float, default=DEFAULT_MIN_MASS)
    parser.add_argument("--cache", help="npz file to keep the ImageNet probabilities in")
    parser.add_argument("--int8-head", action="store_true", help="the int8 graph's own head")
    parser.add_argument("--out", default="benchmarks/results/imagenet_fallback.json")
    args = parser.parse_args()
    images, labels = load_fashion_mnist("test")
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    kinds = negative_images()
    cache = Path(args.cache) if args.cache else None
    cached = dict(np.load(cache)) if cache and cache.is_file() else {}
    embedder = load_embedder(args.backbone, precision="int8" if args.int8_head else "fp32")
    head = "int8-" if args.int8_head else ""
    variants = {"stored": lambda i: 255 - i}
    if args.inverted:
        variants["inverted"] = lambda i: i
    probs, rates = {}, {}
    for variant, pixels in variants.items():
        key = f"{head}{variant}-{len(images)}"
        if key not in cached:
            started = time.perf_counter()
            as_rgb = [Image.fromarray(pixels(i)).convert("RGB") for i in images]
            cached[key] = classify_images(embedder, as_rgb, variant, args.int8_head)
            cached[f"rate-{key}"] = np.array(len(images) / (time.perf_counter() - started))
        probs[variant] = cached[key]
        rates[variant] = float(cached[f"rate-{key}"])
    for kind, named in kinds.items():
        if f"{head}neg-{kind}" not in cached:
            found = classify_images(embedder, [im for _, im in named], kind, args.int8_head)
            cached[f"{head}neg-{kind}"] = found
    if cache:
        np.savez(cache, **cached)
    negatives = {kind: cached[f"{head}neg-{kind}"] for kind in kinds if kind != "people"}
    results = {v: fmnist_metrics(p, labels, args.min_mass) for v, p in probs.items()}
    sweep = threshold_sweep(probs["stored"], labels, negatives)
    people = {
        name: predict_garments(p[None], min_mass=args.min_mass)[0]
        for (name, _), p in zip(kinds["people"], cached[f"{head}neg-people"], strict=True)
    }
    _print(results, sweep, people, rates)
    save(
        args.out,
        {
            **environment("numpy", "onnxruntime", "torch"),
            "backbone": args.backbone,
            "runtime": embedder.runtime,
            "head": "int8 graph" if args.int8_head else "float graph",
            "threads": embedder.threads,
            "images_per_second": rates,
            "fmnist_to_taxonomy": FMNIST_TO_TAXONOMY,
            "results": results,
            "threshold_sweep": sweep,
            "negatives": {kind: len(named) for kind, named in kinds.items()},
            "people": people,
        },
    )


def _print(results: dict, sweep: list[dict], people: dict, rates: dict) -> None:
    for variant, r in results.items():
        rate = f", {rates[variant]:.1f} img/s"
        print(
            f"\n{variant} ({r['images']:,} images, min_mass {r['min_mass']}{rate}): "
            f"top-1 {r['top1']:.3f}  top-3 {r['top3']:.3f}  unknown {r['unknown_share']:.3f}  "
            f"top-1 of answered {r['top1_of_answered'] or 0:.3f}  "
            f"top-1 without 'unknown' {r['top1_without_unknown_rule']:.3f}"
        )
        print(f"{'class':<12} {'category':<15} {'top-1':>6} {'top-3':>6} {'unknown':>8}")
        for name, c in r["per_class"].items():
            print(
                f"{name:<12} {c['category']:<15} {c['top1']:>6.3f} {c['top3']:>6.3f} "
                f"{c['unknown']:>8.3f}"
            )
        columns = r["confusion"]["columns"]
        short = [c.split("/")[0][:5] for c in columns]
        print("\nconfusion (rows: Fashion-MNIST, columns: predicted top-1)")
        print(f"{'':<12}" + "".join(f"{s:>6}" for s in short))
        for name, counts in zip(r["confusion"]["rows"], r["confusion"]["counts"], strict=True):
            print(f"{name:<12}" + "".join(f"{n:>6}" for n in counts))
    kinds = [k.removesuffix("_called_garment") for k in sweep[0] if k.endswith("_called_garment")]
    print("\nthreshold sweep (stored images; non-garment columns: share called a garment)")
    print(
        f"{'min_mass':>8} {'top-1':>6} {'answered':>9} {'acc.ans':>8}"
        + "".join(f"{k:>11}" for k in kinds)
    )
    for row in sweep:
        print(
            f"{row['min_mass']:>8.2f} {row['fmnist_top1']:>6.3f} {row['fmnist_answered']:>9.3f} "
            f"{row['fmnist_top1_of_answered'] or 0:>8.3f}"
            + "".join(f"{row[f'{k}_called_garment']:>11.3f}" for k in kinds)
        )
    print("\nphotos of people:", {n: p[:2] for n, p in people.items()})


if __name__ == "__main__":
    main()
