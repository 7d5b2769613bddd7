"""The INT8 mixed-precision search: the most sensitive convolutions stay float, only as needed."""

from __future__ import annotations

import onnx

from biovita.bundle import load_bundle
from export.quantise import MAX_FLOAT_SHARE, SEARCH_HEADROOM, quantise_int8
from export.runtime import ort_embed, ort_session
from export.windows import manifest_windows


def _int8_convolutions(path) -> set[str]:
    """Conv nodes whose weights come through a DequantizeLinear (int8 in the file)."""
    graph = onnx.load(str(path)).graph
    made_by = {out: node for node in graph.node for out in node.output}
    return {
        n.name
        for n in graph.node
        if n.op_type == "Conv" and made_by.get(n.input[1], n).op_type == "DequantizeLinear"
    }


def test_search_keeps_sensitive_layers_float_until_the_goal(jetson_bundle, world, tmp_path):
    bundle = load_bundle(jetson_bundle)
    train = manifest_windows(world, bundle.manifest.frontend, "train").pcm
    fp32 = bundle.tower_path

    everything = quantise_int8(fp32, tmp_path / "all.onnx", train[:64], "cpu")
    assert everything.float_convolutions == () and everything.check_top1 is None
    assert len(_int8_convolutions(tmp_path / "all.onnx")) == everything.convolutions > 0

    # above what the fully quantised tiny tower reaches, so the search must run; with the
    # headroom it asks for every window (1.0), so it may well stop at the cap instead
    goal = 0.995
    plan = quantise_int8(
        fp32, tmp_path / "mixed.onnx", train[:64], "cpu", train, bundle.bank, min_top1=goal
    )
    cap = int(MAX_FLOAT_SHARE * plan.convolutions)
    assert 1 <= len(plan.float_convolutions) <= cap
    assert plan.check_windows == len(train)
    assert (
        plan.check_top1 >= min(1.0, goal + SEARCH_HEADROOM) or len(plan.float_convolutions) == cap
    )
    int8 = _int8_convolutions(tmp_path / "mixed.onnx")
    assert int8.isdisjoint(plan.float_convolutions)
    assert len(int8) == plan.convolutions - len(plan.float_convolutions)
    # the float layers bring the tower closer to fp32 than quantising everything
    reference = ort_embed(ort_session(fp32), train)
    error = {
        name: float(((ort_embed(ort_session(tmp_path / name), train) - reference) ** 2).sum())
        for name in ("all.onnx", "mixed.onnx")
    }
    assert error["mixed.onnx"] < error["all.onnx"], error
    assert f"{len(int8)} of {plan.convolutions} convolutions int8" in plan.describe()
