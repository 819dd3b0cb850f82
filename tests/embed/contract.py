"""The `Embedder` contract: tests every implementation inherits.

A subclass named `Test...` provides the implementation under test as a class-scoped fixture
`subject`; the `pictures` fixture (tests/embed/conftest.py) gives four small image files.

Example:
    >>> class TestMine(EmbedderContract):
    ...     @pytest.fixture(scope="class")
    ...     @classmethod
    ...     def subject(cls):
    ...         return MyEmbedder()
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylefinder.embed.base import CLASSES, Embedder
from stylefinder.errors import BadImageError

ATOL = 1e-5  # batched and one-by-one runs may sum in another order


class EmbedderContract:
    """What every `Embedder` promises: unit float32 vectors of `space.dim`, the same for an
    image alone or in a batch and on every run, from paths, bytes or PIL images; a bad image
    is a `BadImageError`; class probabilities (where there is a head) sum to 1."""

    def test_it_is_an_embedder(self, subject):
        assert isinstance(subject, Embedder)
        assert subject.space.backbone == subject.spec.name
        assert subject.space.dim > 0 and subject.space.precision in ("fp32", "int8")
        assert subject.max_pixels > 0 and subject.threads >= 1

    def test_vectors_are_unit_float32_of_the_space_dimension(self, subject, pictures):
        vectors = subject.embed(pictures)
        assert vectors.dtype == np.float32
        assert vectors.shape == (len(pictures), subject.space.dim)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
        assert subject.embed_one(pictures[0]).shape == (subject.space.dim,)
        assert subject.embed([]).shape == (0, subject.space.dim)

    def test_a_batch_equals_one_by_one(self, subject, pictures):
        batch = subject.embed(pictures)
        alone = np.stack([subject.embed_one(path) for path in pictures])
        np.testing.assert_allclose(batch, alone, atol=ATOL)

    def test_vectors_are_deterministic(self, subject, pictures):
        np.testing.assert_array_equal(subject.embed(pictures), subject.embed(pictures))

    def test_different_images_get_different_vectors(self, subject, pictures):
        vectors = subject.embed(pictures)
        similarity = vectors @ vectors.T
        assert (similarity[~np.eye(len(pictures), dtype=bool)] < 1 - 1e-4).all()

    def test_decode_reads_paths_bytes_and_pil_images(self, subject, pictures):
        path = pictures[1]
        sources = [path, str(path), path.read_bytes(), Image.open(path)]
        for source in sources:
            image = subject.decode(source)
            assert image.mode == "RGB" and image.size[0] > 0
        vectors = np.stack([subject.embed_one(source) for source in sources])
        np.testing.assert_allclose(vectors, vectors[[0, 0, 0, 0]], atol=ATOL)
        assert subject.preprocess(path).shape == (*[subject.spec.preprocessing.input_size] * 2, 3)
        assert subject.preprocess(path).dtype == np.uint8

    def test_a_corrupt_image_is_a_bad_image_error(self, subject, pictures, tmp_path: Path):
        broken = tmp_path / "broken.jpg"
        broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
        for source in (b"not an image", b"", broken, tmp_path / "missing.png"):
            with pytest.raises(BadImageError):
                subject.decode(source)
        with pytest.raises(BadImageError):
            subject.embed([pictures[0], broken])
        with pytest.raises(BadImageError):
            subject.embed_and_classify([broken])

    def test_run_takes_uint8_inputs(self, subject, pictures):
        inputs = np.stack([subject.preprocess(path) for path in pictures])
        vectors, probabilities = subject.run(inputs)
        np.testing.assert_allclose(vectors, subject.embed(pictures), atol=ATOL)
        if probabilities is not None:
            assert subject.has_head and probabilities.shape == (len(pictures), CLASSES)
        empty, _ = subject.run(inputs[:0])
        assert empty.shape == (0, subject.space.dim)

    def test_class_probabilities_sum_to_one_where_there_is_a_head(self, subject, pictures):
        vectors, probabilities = subject.embed_and_classify(pictures)
        np.testing.assert_allclose(vectors, subject.embed(pictures), atol=ATOL)
        inputs = np.stack([subject.preprocess(path) for path in pictures])
        if not subject.has_head:
            assert probabilities is None
            with pytest.raises(ValueError, match="no ImageNet head"):
                subject.classify_inputs(inputs)
            return
        assert probabilities.shape == (len(pictures), CLASSES)
        assert probabilities.dtype == np.float32 and (probabilities >= 0).all()
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)
        np.testing.assert_allclose(subject.classify_inputs(inputs), probabilities, atol=ATOL)
        np.testing.assert_allclose(subject.classify(pictures[0]), probabilities[0], atol=ATOL)
        assert subject.classify_inputs(inputs[:0]).shape == (0, CLASSES)

    @pytest.mark.parametrize("workers", [1, 2])
    def test_the_stream_keeps_order_and_sets_bad_images_aside(
        self, subject, pictures, tmp_path: Path, workers: int
    ):
        broken = tmp_path / "broken.png"
        broken.write_bytes(b"\x89PNG not really")
        sources = [(n, path) for n, path in enumerate(pictures * 5)]  # 20: several batches
        sources.insert(7, ("broken", broken))
        batches = list(subject.embed_stream(sources, workers=workers, annotate=_size))
        assert [key for batch in batches for key in batch.keys] == list(range(20))
        assert [key for batch in batches for key, _ in batch.failures] == ["broken"]
        assert all(isinstance(e, BadImageError) for b in batches for _, e in b.failures)
        notes = [note for batch in batches for note in batch.notes]
        assert notes == [subject.decode(path).size for path in pictures * 5]
        streamed = np.concatenate([batch.vectors for batch in batches])
        assert streamed.dtype == np.float32
        np.testing.assert_allclose(streamed, subject.embed(pictures * 5), atol=ATOL)
        probabilities = [batch.probabilities for batch in batches]
        if not (subject.has_head and subject.space.precision == "fp32"):  # from the same run
            assert all(p is None for p in probabilities)
            return
        inputs = np.stack([subject.preprocess(path) for path in pictures * 5])
        expected = subject.classify_inputs(inputs)
        np.testing.assert_allclose(np.concatenate(probabilities), expected, atol=ATOL)


def _size(image: Image.Image) -> tuple[int, int]:
    return image.size
