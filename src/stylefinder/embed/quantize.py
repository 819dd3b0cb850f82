"""Optional int8 quantization of an exported backbone (ONNX Runtime static quantization).

The first and the last two convolutions stay in float: quantizing them cost most of the
retrieval quality in our measurements (see README, Performance), and so does the ImageNet head
(category predictions come from the same graph). Activations are calibrated with the
percentile method on images shipped with the package.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from stylefinder.io.files import atomic_write


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
