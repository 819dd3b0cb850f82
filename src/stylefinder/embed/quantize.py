"""Optional int8 quantization of an exported backbone (ONNX Runtime static quantization).

The first and the last two convolutions stay in float: quantizing them cost most of the
retrieval quality in our measurements (see README, Performance), and so does the ImageNet head
(category predictions come from the same graph). Activations are calibrated with the
percentile method on images shipped with the package.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from stylefinder.embed.preprocess import to_input
from stylefinder.embed.registry import Preprocessing
from stylefinder.io.files import atomic_write

log = logging.getLogger(__name__)
CALIBRATION_IMAGES = 100


def int8_graph(graph: Path, prep: Preprocessing) -> Path:
    """The int8 version of the float graph `graph` (beside it), quantized on first use.

    Example:
        >>> int8_graph(Path("lite0-gem-abc-u8h.onnx"), prep).name  # doctest: +SKIP
        'lite0-gem-abc-u8h-int8.onnx'
    """
    quantized = graph.with_name(graph.name.replace(".onnx", "-int8.onnx"))
    if not quantized.is_file():
        log.info("quantizing %s to int8", graph.name)
        quantize_int8(graph, quantized, calibration_inputs(prep))
    return quantized


def calibration_inputs(prep: Preprocessing, count: int = CALIBRATION_IMAGES) -> np.ndarray:
    """Preprocessed images that set the int8 activation ranges (shipped demo garments)."""
    from stylefinder.catalog.demo import load_demo_arrays

    images = load_demo_arrays()["images"]
    picks = np.linspace(0, len(images) - 1, count).astype(int)
    return np.stack(
        [to_input(Image.fromarray(255 - images[i]).convert("RGB"), prep) for i in picks]
    )


def quantize_int8(source: Path, target: Path, calibration: np.ndarray) -> Path:
    """Write an int8 (QDQ) version of the float ONNX graph `source` to `target` atomically.

    `calibration` holds preprocessed inputs (N, S, S, 3) uint8 used to choose activation ranges.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(
                [{"pixels": calibration[i : i + 1]} for i in range(len(calibration))]
            )

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory(prefix="stylefinder-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        nodes = onnx.load(str(prepared)).graph.node
        convs = [n.name for n in nodes if n.op_type == "Conv"]
        heads = [n.name for n in nodes if n.op_type in ("Gemm", "MatMul")]  # the ImageNet head
        quantized = Path(tmp) / "int8.onnx"
        quantize_static(
            str(prepared),
            str(quantized),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            calibrate_method=CalibrationMethod.Percentile,
            nodes_to_exclude=convs[:1] + convs[-2:] + heads,
        )
        atomic_write(target, quantized.read_bytes())
    return target
