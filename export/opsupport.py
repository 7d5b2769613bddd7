"""Static check that a graph only uses ONNX ops the target's TensorRT parser supports.

An unsupported op fails the export here, on the build host, rather than the engine build on a
recorder in the field. The table is the onnx-tensorrt operator matrix for TensorRT 10.15
(docs/operators.md, "Y" rows), narrowed to an older 10.x release by the onnx-tensorrt changelog
(``_ADDED_IN``): e.g. STFT arrived in 10.5 and the window ops in 10.4, so JetPack 6's TensorRT 10.3
has neither; DFT and MelWeightMatrix are unsupported in every release. The parser on the target
stays the final word (``biovita-field engine`` parses the graph again); this table catches the
common mistakes early.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import onnx

from export.errors import OpSupportError

DEFAULT_TRT_VERSION = "10.3"  # JetPack 6.x

_SUPPORTED_IN_10_15 = frozenset(
    [
        "Abs",
        "Acos",
        "Acosh",
        "Add",
        "And",
        "ArgMax",
        "ArgMin",
        "Asin",
        "Asinh",
        "Atan",
        "Atanh",
        "Attention",
        "AveragePool",
        "BatchNormalization",
        "BlackmanWindow",
        "Cast",
        "CastLike",
        "Ceil",
        "Celu",
        "Clip",
        "Concat",
        "Constant",
        "ConstantOfShape",
        "Conv",
        "ConvTranspose",
        "Cos",
        "Cosh",
        "CumSum",
        "DeformConv",
        "DepthToSpace",
        "DequantizeLinear",
        "Div",
        "Dropout",
        "Einsum",
        "Elu",
        "Equal",
        "Erf",
        "Exp",
        "Expand",
        "EyeLike",
        "Flatten",
        "Floor",
        "Gather",
        "GatherElements",
        "GatherND",
        "Gelu",
        "Gemm",
        "GlobalAveragePool",
        "GlobalLpPool",
        "GlobalMaxPool",
        "Greater",
        "GreaterOrEqual",
        "GridSample",
        "GroupNormalization",
        "GRU",
        "HammingWindow",
        "HannWindow",
        "HardSigmoid",
        "HardSwish",
        "Hardmax",
        "Identity",
        "If",
        "ImageScaler",
        "InstanceNormalization",
        "IsInf",
        "IsNaN",
        "LayerNormalization",
        "LeakyRelu",
        "Less",
        "LessOrEqual",
        "Log",
        "LogSoftmax",
        "Loop",
        "LRN",
        "LSTM",
        "LpNormalization",
        "LpPool",
        "MatMul",
        "Max",
        "MaxPool",
        "Mean",
        "MeanVarianceNormalization",
        "Min",
        "Mish",
        "Mod",
        "Mul",
        "Neg",
        "NonMaxSuppression",
        "NonZero",
        "Not",
        "OneHot",
        "Or",
        "Pad",
        "ParametricSoftplus",
        "Pow",
        "PRelu",
        "QuantizeLinear",
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
        "Range",
        "Reciprocal",
        "ReduceL1",
        "ReduceL2",
        "ReduceLogSum",
        "ReduceLogSumExp",
        "ReduceMax",
        "ReduceMean",
        "ReduceMin",
        "ReduceProd",
        "ReduceSum",
        "ReduceSumSquare",
        "Relu",
        "Reshape",
        "Resize",
        "ReverseSequence",
        "RMSNormalization",
        "RNN",
        "RoiAlign",
        "RotaryEmbedding",
        "Round",
        "STFT",
        "ScaledTanh",
        "Scan",
        "Scatter",
        "ScatterElements",
        "ScatterND",
        "Selu",
        "Shape",
        "Shrink",
        "Sigmoid",
        "Sign",
        "Sin",
        "Sinh",
        "Size",
        "Slice",
        "Softmax",
        "Softplus",
        "Softsign",
        "SpaceToDepth",
        "Split",
        "Sqrt",
        "Squeeze",
        "Sub",
        "Sum",
        "Tan",
        "Tanh",
        "TensorScatter",
        "ThresholdedRelu",
        "Tile",
        "TopK",
        "Transpose",
        "Trilu",
        "Unsqueeze",
        "Upsample",
        "Where",
        "Xor",
    ]
)

# Ops that joined the parser after 10.0, with the release that added them (onnx-tensorrt changelog).
_ADDED_IN: dict[str, tuple[int, int]] = {
    "DeformConv": (10, 1),
    "BlackmanWindow": (10, 4),
    "HammingWindow": (10, 4),
    "HannWindow": (10, 4),
    "STFT": (10, 5),
    "Attention": (10, 14),
    "RMSNormalization": (10, 15),
    "RotaryEmbedding": (10, 15),
    "TensorScatter": (10, 15),
}

# Highest default-domain opset each documented release parses (10.0: opsets 9-20; 10.15: 9-24).
# Releases in between are held to the lower, documented bound.
_MIN_OPSET = 9
_MAX_OPSET: dict[tuple[int, int], int] = {(10, 15): 24}
_MAX_OPSET_DEFAULT = 20
_NEWEST = (10, 15)

_DEFAULT_DOMAINS = ("", "ai.onnx")


def parse_trt_version(text: str) -> tuple[int, int]:
    """``"10.3"`` or ``"10.3.0.30"`` -> ``(10, 3)``; only the 10.x tables exist."""
    try:
        major, minor = (int(p) for p in text.strip().split(".")[:2])
    except ValueError:
        raise OpSupportError(
            f"{text!r} is not a TensorRT version", hint="pass e.g. --trt-version 10.3"
        ) from None
    if major != 10 or (major, minor) > _NEWEST:
        raise OpSupportError(
            f"no op-support table for TensorRT {text}",
            hint=f"known: 10.0 to {_NEWEST[0]}.{_NEWEST[1]} (JetPack 6 ships 10.3)",
        )
    return major, minor


def supported_ops(trt_version: str) -> frozenset[str]:
    version = parse_trt_version(trt_version)
    return frozenset(op for op in _SUPPORTED_IN_10_15 if _ADDED_IN.get(op, (10, 0)) <= version)


def max_opset(trt_version: str) -> int:
    return _MAX_OPSET.get(parse_trt_version(trt_version), _MAX_OPSET_DEFAULT)


@dataclass(frozen=True)
class OpReport:
    """What the graph uses: op type -> node count, checked against one TensorRT version."""

    trt_version: str
    opset: int
    ops: dict[str, int]

    def describe(self) -> str:
        used = ", ".join(f"{op} x{n}" for op, n in sorted(self.ops.items()))
        return f"TensorRT {self.trt_version}: opset {self.opset}, {len(self.ops)} op types ({used})"


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node, including those inside If/Loop/Scan bodies."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _nodes(sub)


def _default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in _DEFAULT_DOMAINS:
            return entry.version
    raise OpSupportError("the ONNX model declares no default-domain opset", hint="re-export it")


def check_ops(model: onnx.ModelProto, trt_version: str = DEFAULT_TRT_VERSION) -> OpReport:
    """Raise ``OpSupportError`` naming every node TensorRT ``trt_version`` cannot parse."""
    allowed = supported_ops(trt_version)
    opset = _default_opset(model)
    if not _MIN_OPSET <= opset <= max_opset(trt_version):
        raise OpSupportError(
            f"the graph uses opset {opset}; TensorRT {trt_version} parses opsets "
            f"{_MIN_OPSET} to {max_opset(trt_version)}",
            hint="export with --opset 17 (the default)",
        )
    counts: Counter[str] = Counter()
    bad: list[str] = []
    for node in _nodes(model.graph):
        label = (
            node.op_type if node.domain in _DEFAULT_DOMAINS else f"{node.domain}::{node.op_type}"
        )
        counts[label] += 1
        if node.domain not in _DEFAULT_DOMAINS or node.op_type not in allowed:
            bad.append(f"{label} (node {node.name or '?'})")
    if bad:
        shown = ", ".join(bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
        raise OpSupportError(
            f"TensorRT {trt_version} cannot parse {len(bad)} node(s) of this graph: {shown}",
            hint="rewrite those layers with supported ops (e.g. the Conv1d DFT front-end of "
            "trainer.models.frontend instead of torch.stft), or target a TensorRT that has them",
        )
    return OpReport(trt_version=trt_version, opset=opset, ops=dict(counts))
