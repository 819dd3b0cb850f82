"""A projection of the frozen embeddings learned from a shop's own labels.

Two methods. `mlp` (the default): the embeddings' principal components feed a small two-layer
network trained on CPU to classify the labels; its output, blended with the principal components
and the network's hidden activations (so that what the labels do not describe still counts, and
categories the labels never named keep their neighbours), is the new embedding, and its softmax
head is a calibrated category classifier. `linear`: within-class whitening, then the most
discriminative directions: directions along which items of one label vary are shrunk.
Vectors are L2-normalized after the projection. It is stored in the index directory as
`projection.npz` (arrays only, no pickle) and applied to catalog and query vectors alike.

Example:
    >>> projection = fit_projection(vectors, labels)  # doctest: +SKIP
    >>> projection.apply(vectors).shape  # doctest: +SKIP
    (1000, 64)
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stylefinder.errors import UnknownColumnError
from stylefinder.io.files import load_npz
from stylefinder.types import Item, metadata_columns

PROJECTION_FILE = "projection.npz"
TUNED_FOLDER = "tuned"  # the projected search space, see stylefinder.recommend.tuned_space
_COSINE_SCALE = 16.0  # logit scale of the cosine softmax head during training


@dataclass
class Classifier:
    """Cosine softmax head on the network's output:
    probabilities = softmax(normalize(z) @ weight / temperature), `weight` holding the scaled
    unit class directions."""

    labels: list[str]
    weight: np.ndarray  # (d, classes)
    temperature: float = 1.0  # fitted on held-out training items, so probabilities are calibrated


@dataclass
class Projection:
    """x -> h = (x - mean) @ matrix; then, with `layers`, z = MLP(h) with hidden activations a
    (taken before the ReLU when `hidden_before_relu`), and the output is [sqrt(raw_weight) *
    normalize(h), sqrt(hidden_weight) * normalize(a - hidden_mean), sqrt(1 - raw_weight -
    hidden_weight) * normalize(z)]; else normalize(h).

    `extra` networks (an ensemble, trained with other seeds) add their normalized outputs to z
    (and hidden activations to a) and average their probabilities with this one's.
    """

    mean: np.ndarray  # (D,)
    matrix: np.ndarray  # (D, d)
    info: dict = field(default_factory=dict)  # training metadata, saved with it
    layers: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # ReLU between
    raw_weight: float = 0.0
    classifier: Classifier | None = None
    extra: list[Projection] = field(default_factory=list)
    hidden_weight: float = 0.0
    hidden_mean: np.ndarray | None = None  # (hidden,) mean activation on the training items
    hidden_before_relu: bool = False  # new fits: True (older files took them after the ReLU)
    digest: str = ""  # of the projection.npz it was loaded from ("" when not loaded from a file)

    @property
    def dim(self) -> int:
        if not self.layers:
            return int(self.matrix.shape[1])
        out = sum(int(p.layers[-1][0].shape[1]) for p in self._networks)
        if self.hidden_weight > 0:
            out += sum(int(p.layers[-2][0].shape[1]) for p in self._networks)
        return out + (int(self.matrix.shape[1]) if self.raw_weight > 0 else 0)

    @property
    def _networks(self) -> list[Projection]:
        return [self, *self.extra]

    def apply(self, vectors: np.ndarray, *, block: int = 65_536) -> np.ndarray:
        """Project unit vectors (N, D) or (D,) to unit vectors (N, d) or (d,)."""
        vectors = np.asarray(vectors, np.float32)
        single = vectors.ndim == 1
        rows = vectors[None] if single else vectors
        out = np.empty((len(rows), self.dim), np.float32)
        for start in range(0, len(rows), block):
            part = rows[start : start + block]
            hidden = (part - self.mean) @ self.matrix
            if not self.layers:
                out[start : start + block] = _normalize(hidden)
                continue
            forwards = [  # ensemble members share the components: computed once
                p._forward(part, hidden if p.shares_components(self) else None)
                for p in self._networks
            ]
            pieces = [(self.raw_weight, hidden)] if self.raw_weight > 0 else []
            if self.hidden_weight > 0:
                pieces.append((self.hidden_weight, np.hstack([a for a, _ in forwards])))
            pieces.append(
                (1 - self.raw_weight - self.hidden_weight, np.hstack([z for _, z in forwards]))
            )
            column = 0
            for weight, values in pieces:  # each piece normalized, weighted, written in place
                width = values.shape[1]
                scaled = math.sqrt(weight) * _normalize(values)  # a Python float keeps float32
                out[start : start + block, column : column + width] = scaled
                column += width
        return out[0] if single else out

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """Calibrated label probabilities (N, classes) of unit vectors (N, D).

        Example:
            >>> projection.probabilities(engine.embed("photo.jpg")[None])  # doctest: +SKIP
            array([[0.01, 0.93, ...]], dtype=float32)
        """
        if self.classifier is None:
            raise ValueError("this projection has no classifier (tune with --method mlp)")
        rows = np.asarray(vectors, np.float32).reshape(-1, len(self.mean))
        return np.mean([p._probabilities(rows) for p in self._networks], axis=0)

    def _probabilities(self, rows: np.ndarray) -> np.ndarray:
        logits = self._outputs(rows) @ self.classifier.weight / self.classifier.temperature
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)

    def _outputs(self, rows: np.ndarray) -> np.ndarray:
        """This network's normalized output for unit vectors (N, D)."""
        return self._forward(rows)[1]

    def shares_components(self, other: Projection) -> bool:
        """Whether this network reads the same principal components as `other`."""
        return self.mean is other.mean and self.matrix is other.matrix

    def _forward(
        self, rows: np.ndarray, components: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """This network's normalized, centred last hidden activations and normalized output;
        `components` are `rows`' principal components when already computed."""
        hidden = (rows - self.mean) @ self.matrix if components is None else components
        activations = hidden
        for n, (weight, bias) in enumerate(self.layers):
            hidden = hidden @ weight + bias
            if n < len(self.layers) - 1:
                before = hidden
                hidden = np.maximum(hidden, 0)
                activations = before if self.hidden_before_relu else hidden
        if self.hidden_mean is not None:
            activations = activations - self.hidden_mean
        return _normalize(activations), _normalize(hidden)

    def save(self, directory: str | Path) -> Path:
        """Write projection.npz into `directory` atomically."""
        from stylefinder.io.files import atomic_write

        target = Path(directory) / PROJECTION_FILE
        atomic_write(target, self.to_bytes())
        return target

    def to_bytes(self) -> bytes:
        """The projection as the bytes of projection.npz (and `digest` set to theirs).

        Example:
            >>> again = Projection.from_bytes(projection.to_bytes())  # doctest: +SKIP
            >>> again.digest == projection.digest  # doctest: +SKIP
            True
        """
        from stylefinder.io.files import npz_bytes

        arrays = {
            "raw_weight": self.raw_weight,
            "hidden_weight": self.hidden_weight,
            "hidden_before_relu": self.hidden_before_relu,
            "info": json.dumps(self.info),
        }
        for n, network in enumerate(self._networks):
            prefix = f"extra{n - 1}_" if n else ""
            arrays.update({prefix + name: a for name, a in network._arrays().items()})
        content = npz_bytes(**arrays)
        self.digest = _digest(content)
        return content

    def _arrays(self) -> dict[str, object]:
        arrays: dict[str, object] = {"mean": self.mean, "matrix": self.matrix}
        if self.hidden_mean is not None:
            arrays["hidden_mean"] = self.hidden_mean
        for n, (weight, bias) in enumerate(self.layers):
            arrays[f"layer{n}_weight"], arrays[f"layer{n}_bias"] = weight, bias
        if self.classifier is not None:
            arrays["class_weight"] = self.classifier.weight
            arrays["class_temperature"] = self.classifier.temperature
            arrays["class_labels"] = json.dumps(self.classifier.labels)
        return arrays

    @classmethod
    def load(cls, directory: str | Path) -> Projection | None:
        """The projection stored in `directory`, or None when there is none."""
        path = Path(directory) / PROJECTION_FILE
        if not path.is_file():
            return None
        return cls.from_bytes(path.read_bytes())  # one read: the digest is of these arrays

    @classmethod
    def from_bytes(cls, content: bytes) -> Projection:
        """The projection whose projection.npz bytes are `content` (see `to_bytes`)."""
        arrays = load_npz(io.BytesIO(content))
        projection = cls._from_arrays(arrays, "")
        projection.digest = _digest(content)
        projection.info = json.loads(str(arrays["info"]))
        projection.raw_weight = float(arrays.get("raw_weight", 0.0))
        projection.hidden_weight = float(arrays.get("hidden_weight", 0.0))  # older files: none
        while f"extra{len(projection.extra)}_mean" in arrays:
            network = cls._from_arrays(arrays, f"extra{len(projection.extra)}_")
            same_mean = np.array_equal(network.mean, projection.mean)
            if same_mean and np.array_equal(network.matrix, projection.matrix):
                network.mean, network.matrix = projection.mean, projection.matrix  # one copy
            projection.extra.append(network)
        before_relu = bool(arrays.get("hidden_before_relu", False))  # older files: after it
        for network in projection._networks:
            network.hidden_before_relu = before_relu
        return projection

    @classmethod
    def _from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> Projection:
        def f32(name: str) -> np.ndarray:
            return arrays[prefix + name].astype(np.float32)

        layers = []
        while f"{prefix}layer{len(layers)}_weight" in arrays:
            n = len(layers)
            layers.append((f32(f"layer{n}_weight"), f32(f"layer{n}_bias")))
        classifier = None
        if prefix + "class_weight" in arrays:
            labels = json.loads(str(arrays[prefix + "class_labels"]))
            temperature = float(arrays[prefix + "class_temperature"])
            classifier = Classifier(labels, f32("class_weight"), temperature)
        hidden_mean = f32("hidden_mean") if prefix + "hidden_mean" in arrays else None
        return cls(
            f32("mean"),
            f32("matrix"),
            layers=layers,
            classifier=classifier,
            hidden_mean=hidden_mean,
        )


def _digest(content: bytes) -> str:
    return hashlib.blake2b(content, digest_size=8).hexdigest()


def _normalize(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def fit_projection(
    vectors: np.ndarray,
    labels: list[str] | np.ndarray,
    *,
    dim: int = 64,
    shrinkage: float = 0.1,
) -> Projection:
    """Learn within-class whitening, then keep the `dim` most discriminative directions.

    Directions along which items of one label vary are shrunk to unit variance (whitening of the
    within-class covariance, blended with a scaled identity by `shrinkage` so rare labels and
    unexercised directions stay stable); in that space the directions of largest total variance
    are those along which labels differ most (as in LDA), and the first `dim` are kept.
    """
    x = np.asarray(vectors, np.float64)
    labels = np.asarray(labels)
    classes = sorted(set(labels.tolist()))
    if len(x) != len(labels) or len(classes) < 2:
        raise ValueError("tuning needs labeled vectors of at least two different labels")
    mean = x.mean(axis=0)
    centered = x - mean
    width = x.shape[1]
    within = np.zeros((width, width))
    for label in classes:
        members = centered[labels == label]
        offsets = members - members.mean(axis=0)
        within += offsets.T @ offsets
    within /= len(x)
    within = (1 - shrinkage) * within + shrinkage * np.trace(within) / width * np.eye(width)
    values, basis = np.linalg.eigh(within)
    whitening = basis @ np.diag(1.0 / np.sqrt(np.maximum(values, 1e-12))) @ basis.T
    whitened = centered @ whitening
    total, directions = np.linalg.eigh(whitened.T @ whitened / len(x))
    keep = min(dim, width)
    order = np.argsort(total)[::-1][:keep]
    matrix = (whitening @ directions[:, order]).astype(np.float32)
    info = {
        "method": "linear",
        "description": "within-class whitening + discriminant directions",
        "dim": keep,
        "shrinkage": shrinkage,
        "items": len(x),
        "labels": len(classes),
    }
    return Projection(mean.astype(np.float32), matrix, info)


def fit_mlp_projection(
    vectors: np.ndarray,
    labels: list[str] | np.ndarray,
    *,
    dim: int = 128,
    components: int = 512,
    hidden: int = 512,
    epochs: int = 12,
    raw_weight: float = 0.25,
    hidden_weight: float = 0.4,
    members: int = 3,
    calibration_share: float = 0.05,
    seed: int = 0,
    progress: bool = False,
) -> Projection:
    """Train a two-layer network on the principal components to classify `labels` (CPU, torch).

    The network's `dim`-d output, blended with the `components` principal components by
    `raw_weight` (share of the similarity that stays label-free) and with its centred hidden
    activations (before the ReLU) by `hidden_weight`, is the new embedding (512 + 3 x 512 +
    3 x 128 = 2,432-d with the defaults); its softmax head becomes the projection's classifier,
    with a temperature fitted on a held-out `calibration_share` of the items. `members` networks
    (other seeds) form an ensemble: their outputs are concatenated and their probabilities
    averaged. 60,000 items train in about a minute per member on 2 cores. The defaults were
    chosen on a validation split of Fashion-MNIST's training set (see the README).

    Example:
        >>> projection = fit_mlp_projection(vectors, labels, epochs=5)  # doctest: +SKIP
        >>> projection.classifier.labels  # doctest: +SKIP
        ['Bag', 'Coat', ...]
    """
    import torch
    from tqdm.auto import tqdm

    x = np.asarray(vectors, np.float32)
    labels = np.asarray(labels)
    classes = sorted(set(labels.tolist()))
    if len(x) != len(labels) or len(classes) < 2:
        raise ValueError("tuning needs labeled vectors of at least two different labels")
    if min(raw_weight, hidden_weight) < 0 or raw_weight + hidden_weight >= 1:
        raise ValueError(
            "need raw_weight, hidden_weight >= 0 with a sum below 1, not "
            f"{raw_weight}, {hidden_weight}"
        )
    targets = np.searchsorted(classes, labels)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)

    mean = x.mean(axis=0)
    sample = x[rng.permutation(len(x))[:20_000]] - mean
    _, spread, directions = np.linalg.svd(sample, full_matrices=False)
    # directions the sample barely spans (small catalogs: as many components as items) would be
    # standardized by a near-zero spread below, so new items would blow up along them
    spanned = max(1, int(np.count_nonzero(spread > spread[0] * 1e-3)))
    components = min(components, spanned)
    basis = directions[:components].T.astype(np.float32)
    h = (x - mean) @ basis
    centre, scale = h.mean(axis=0), h.std(axis=0) + 1e-6

    order = rng.permutation(len(x))
    held = order[: int(len(x) * calibration_share)] if len(x) >= 200 else order[:0]
    train = order[len(held) :]
    inputs = torch.from_numpy((h - centre) / scale)
    y = torch.from_numpy(targets.astype(np.int64))
    bar = tqdm(total=members * epochs, desc="tune", unit="epoch", disable=not progress)

    def train_member(member: int) -> Projection:
        torch.manual_seed(seed + member)
        shuffle = np.random.default_rng(seed + 1 + member)
        net = torch.nn.Sequential(
            torch.nn.Linear(components, hidden),
            torch.nn.BatchNorm1d(hidden),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.2),
            torch.nn.Linear(hidden, dim),
        )
        directions = torch.nn.Parameter(torch.randn(len(classes), dim) * 0.01)
        parameters = [*net.parameters(), directions]

        def head(outputs: torch.Tensor) -> torch.Tensor:  # cosine softmax: unit outputs and classes
            unit = torch.nn.functional.normalize
            return _COSINE_SCALE * unit(outputs, dim=1) @ unit(directions, dim=1).T

        optimizer = torch.optim.AdamW(parameters, lr=1e-3, weight_decay=1e-4)
        batch = 256 if len(train) >= 2048 else 32
        steps_per_epoch = -(-len(train) // batch)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=3e-3, total_steps=epochs * steps_per_epoch
        )
        for _epoch in range(epochs):
            net.train()
            permutation = torch.from_numpy(shuffle.permutation(train))
            for start in range(0, len(permutation), batch):
                rows = permutation[start : start + batch]
                if len(rows) < 2:  # batch norm needs two rows
                    continue
                loss = torch.nn.functional.cross_entropy(
                    head(net(inputs[rows])), y[rows], label_smoothing=0.1
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
            bar.update()
            bar.set_postfix(member=member + 1, loss=f"{loss.item():.3f}", refresh=False)
        net.eval()

        first, norm, _, _, second = net
        with torch.no_grad():  # fold the input scaling and batch norm into the first layer
            gain = (norm.weight / torch.sqrt(norm.running_var + norm.eps)).numpy()
            w1 = first.weight.numpy().T / scale[:, None] * gain
            b1 = (first.bias.numpy() - (centre / scale) @ first.weight.numpy().T) * gain
            b1 += (
                norm.bias
                - norm.running_mean * norm.weight / torch.sqrt(norm.running_var + norm.eps)
            ).numpy()
            layers = [(w1.astype(np.float32), b1.astype(np.float32))]
            layers.append((second.weight.numpy().T.copy(), second.bias.numpy().copy()))
            unit = torch.nn.functional.normalize(directions, dim=1)
            classifier = Classifier(classes, (_COSINE_SCALE * unit).numpy().T.copy())
        activations = h[train[:20_000]] @ layers[0][0] + layers[0][1]  # before the ReLU
        network = Projection(
            mean,
            basis,
            layers=layers,
            raw_weight=raw_weight,
            classifier=classifier,
            hidden_weight=hidden_weight,
            hidden_mean=activations.mean(axis=0).astype(np.float32),
            hidden_before_relu=True,
        )
        if len(held):
            classifier.temperature = _fit_temperature(network, x[held], targets[held])
        return network

    networks = [train_member(member) for member in range(members)]
    bar.close()
    projection = networks[0]
    projection.extra = networks[1:]
    calibration = {}
    if len(held):
        accuracy = projection.probabilities(x[held]).argmax(axis=1) == targets[held]
        calibration = {
            "calibration_items": len(held),
            "calibration_accuracy": float(accuracy.mean()),
        }
    projection.info = {
        "method": "mlp",
        "dim": projection.dim,
        "components": components,
        "hidden": hidden,
        "epochs": epochs,
        "raw_weight": raw_weight,
        "hidden_weight": hidden_weight,
        "items": len(train),
        "labels": len(classes),
        "members": members,
        "temperature": round(projection.classifier.temperature, 4),
        **calibration,
    }
    return projection


def _fit_temperature(projection: Projection, x: np.ndarray, targets: np.ndarray) -> float:
    """The softmax temperature with the lowest negative log-likelihood on held-out items."""
    classifier = projection.classifier
    best, best_nll = 1.0, np.inf
    for temperature in np.exp(np.linspace(np.log(0.25), np.log(4.0), 41)):
        classifier.temperature = float(temperature)
        probabilities = projection.probabilities(x)[np.arange(len(x)), targets]
        nll = -np.log(np.maximum(probabilities, 1e-12)).mean()
        if nll < best_nll:
            best, best_nll = float(temperature), nll
    return best


def labeled_rows(items: Sequence[Item | None], label_column: str) -> list[int]:
    """The rows of the items that have a `label_column` value (None: an empty row, left
    out); raises `UnknownColumnError`
    (naming the known columns) when no item has one, ValueError when fewer than two do.

    Example:
        >>> from stylefinder.types import Item
        >>> labeled_rows([Item("a", "a", "h", metadata={"c": "x"}), Item("b", "b", "h")], "c")
        Traceback (most recent call last):
        ...
        ValueError: only 1 item has a 'c' value; evaluating or tuning needs at least two
    """
    rows = [
        r
        for r, item in enumerate(items)
        if item is not None and item.metadata.get(label_column) not in (None, "")
    ]
    if not rows:
        known = metadata_columns([item for item in items if item is not None])
        raise UnknownColumnError(
            f"no item has a {label_column!r} metadata value; the index's columns are: "
            f"{', '.join(known) or '(none)'}",
            known,
        )
    if len(rows) < 2:
        raise ValueError(
            f"only 1 item has a {label_column!r} value; evaluating or tuning needs at least two"
        )
    return rows
