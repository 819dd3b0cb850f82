"""The ImageNet-head garment fallback: the mapping table, the arithmetic, a real-weights run."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from stylefinder.embed.registry import imagenet_labels
from stylefinder.recognize.taxonomy import (
    DEFAULT_MIN_MASS,
    IMAGENET_CLASSES,
    TAXONOMY,
    UNKNOWN,
    UNMAPPED_GARMENT_LIKE,
    category_mass,
    category_matrix,
    garment_probabilities,
    imagenet_index,
    imagenet_mapping,
    predict_garment,
    predict_garments,
)


def _probs(**mass: float) -> np.ndarray:
    """A (1000,) probability vector: the given ImageNet classes (underscores for spaces), the
    rest of the probability on 'tabby' (a cat, not a garment)."""
    probs = np.zeros(1000, np.float32)
    for name, p in mass.items():
        probs[imagenet_index(name.replace("_", " "))] = p
    probs[imagenet_index("tabby")] = 1.0 - sum(mass.values())
    return probs


def test_every_mapped_and_unmapped_name_is_an_imagenet_class():
    labels = set(imagenet_labels())
    mapped = [name for names in IMAGENET_CLASSES.values() for name in names]
    assert not [name for name in mapped if name not in labels]
    assert not [name for name in UNMAPPED_GARMENT_LIKE if name not in labels]
    assert len(mapped) == len(set(mapped))
    assert not set(mapped) & set(UNMAPPED_GARMENT_LIKE)


def test_every_category_has_imagenet_classes():
    assert tuple(IMAGENET_CLASSES) == TAXONOMY
    assert all(IMAGENET_CLASSES[category] for category in TAXONOMY)
    assert set(imagenet_mapping().values()) == set(TAXONOMY)


def test_mapping_resolves_names_to_indices():
    mapping = imagenet_mapping()
    labels = imagenet_labels()
    assert mapping[608] == "trousers/jeans" and labels[608] == "jean"
    assert mapping[638] == mapping[639] == "swimwear"  # ImageNet has two 'maillot' classes
    assert mapping[474] == "sweater" and 264 not in mapping  # 'Cardigan' 264 is a corgi
    assert category_matrix().sum() == len(mapping)
    assert (category_matrix().sum(axis=1) <= 1).all()


def test_mass_on_jean_is_trousers():
    assert predict_garment(_probs(jean=0.9)) == [("trousers/jeans", 1.0)]


def test_all_mass_on_a_cat_is_unknown():
    assert predict_garment(_probs()) == [(UNKNOWN, 1.0)]
    assert predict_garment(np.full(1000, 1e-3, np.float32))[0][0] == UNKNOWN  # flat: ~5% garment


def test_probabilities_are_summed_then_renormalised():
    probs = _probs(jean=0.3, miniskirt=0.1, overskirt=0.1, sandal=0.05, running_shoe=0.05)
    raw = garment_probabilities(probs)
    assert set(raw) == set(TAXONOMY)
    assert raw["skirt"] == pytest.approx(0.2) and raw["trousers/jeans"] == pytest.approx(0.3)
    assert sum(raw.values()) == pytest.approx(0.6)
    prediction = predict_garment(probs)
    assert [c for c, _ in prediction] == ["trousers/jeans", "skirt", "shoes"]  # ties: table order
    assert [p for _, p in prediction] == pytest.approx([0.5, 1 / 3, 1 / 12])
    assert len(predict_garment(probs, top=5)) == 4  # categories without mass are left out
    assert sum(p for _, p in predict_garment(probs, top=15)) == pytest.approx(1.0)


def test_min_mass_decides_unknown():
    probs = _probs(purse=DEFAULT_MIN_MASS + 0.01)
    assert predict_garment(probs) == [("bag", 1.0)]
    [(label, p)] = predict_garment(probs, min_mass=DEFAULT_MIN_MASS + 0.02)
    assert label == UNKNOWN and p == pytest.approx(1 - DEFAULT_MIN_MASS - 0.01)


def test_batch_matches_single_and_checks_shape():
    batch = np.stack([_probs(jean=0.5), _probs(), _probs(cowboy_hat=0.4, sombrero=0.4)])
    assert predict_garments(batch) == [predict_garment(row) for row in batch]
    assert category_mass(batch).shape == (3, len(TAXONOMY))
    with pytest.raises(ValueError, match="1000"):
        category_mass(np.zeros((2, 10)))
    with pytest.raises(KeyError):
        imagenet_index("no such class")


@pytest.fixture(scope="module")
def torch_embedder():
    """The reference runtime: `classify_inputs` runs the head eagerly, no ONNX export."""
    from stylefinder.embed.torch_runtime import TorchEmbedder

    return TorchEmbedder("efficientnet-lite0")


def _demo_sources(demo, categories: tuple[str, ...], count: int) -> list:
    with open(demo.csv_path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["category"] in categories]
    return [demo.root / r["path"] for r in rows[:count]]


def test_real_weights_recognise_demo_upper_garments(torch_embedder, demo):
    """Coats and pullovers are the classes the ImageNet head knows best on Fashion-MNIST."""
    sources = _demo_sources(demo, ("Coat", "Pullover"), 6)
    inputs = np.stack([torch_embedder.preprocess(s) for s in sources])
    probs = torch_embedder.classify_inputs(inputs)
    assert probs.shape == (len(sources), 1000)
    np.testing.assert_allclose(probs[0], torch_embedder.classify(sources[0]), atol=1e-5)
    predictions = predict_garments(probs)
    assert all(len(p) >= 1 for p in predictions)
    answered = [p for p in predictions if p[0][0] != UNKNOWN]
    assert len(answered) >= len(sources) // 2
    upper = {"sweater", "coat/jacket", "top", "shirt"}
    assert all(p[0][0] in upper for p in answered)


@pytest.mark.slow
def test_onnx_classify_graph_matches_torch(embedder, torch_embedder, demo):
    """The exported classification graph (exported once, ~15 s) gives the torch head's numbers."""
    sources = _demo_sources(demo, ("Bag", "Dress", "Sneaker"), 6)
    inputs = np.stack([embedder.preprocess(s) for s in sources])
    np.testing.assert_allclose(
        embedder.classify_inputs(inputs), torch_embedder.classify_inputs(inputs), atol=1e-4
    )
