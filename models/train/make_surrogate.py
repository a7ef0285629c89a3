#!/usr/bin/env python3
"""Write a small ONNX process surrogate with given weights (numpy + onnx, no torch).

    make_surrogate.py OUT.onnx < spec.json

The graph maps x [batch, n] f32 to y [batch, m] f32:

    z = x W1 + b1                       (hidden, [batch, h])
    y = (z * z) Q + tanh(z) T + x L + c

spec.json holds W1 [n][h], b1 [h], and any of Q [h][m], T [h][m], L [n][m],
c [m] (missing ones are zeros). With T = 0 the outputs are quadratic in x
(their optima have closed forms: models/tests/models/cmaes_peer.rs computes
them from the same weights); with Q = 0 and L = 0 it is a 2-layer tanh MLP.
Prints {"path": OUT, "inputs": n, "outputs": m, "onnx": version} as JSON.
"""

import json
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build(spec: dict) -> onnx.ModelProto:
    W1 = np.asarray(spec["W1"], dtype=np.float32)
    n, h = W1.shape
    b1 = np.asarray(spec["b1"], dtype=np.float32).reshape(h)
    m = None
    for k in ("Q", "T", "L", "c"):
        if k in spec:
            m = np.asarray(spec[k]).shape[-1]
            break
    if m is None:
        sys.exit("spec needs at least one of Q, T, L, c")
    Q = np.asarray(spec.get("Q", np.zeros((h, m))), dtype=np.float32).reshape(h, m)
    T = np.asarray(spec.get("T", np.zeros((h, m))), dtype=np.float32).reshape(h, m)
    L = np.asarray(spec.get("L", np.zeros((n, m))), dtype=np.float32).reshape(n, m)
    c = np.asarray(spec.get("c", np.zeros(m)), dtype=np.float32).reshape(m)
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["xw"]),
        helper.make_node("Add", ["xw", "b1"], ["z"]),
        helper.make_node("Mul", ["z", "z"], ["zz"]),
        helper.make_node("Tanh", ["z"], ["t"]),
        helper.make_node("MatMul", ["zz", "Q"], ["yq"]),
        helper.make_node("MatMul", ["t", "T"], ["yt"]),
        helper.make_node("MatMul", ["x", "L"], ["yl"]),
        helper.make_node("Add", ["yq", "yt"], ["s1"]),
        helper.make_node("Add", ["s1", "yl"], ["s2"]),
        helper.make_node("Add", ["s2", "c"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "surrogate",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", m])],
        initializer=[
            numpy_helper.from_array(W1, "W1"),
            numpy_helper.from_array(b1, "b1"),
            numpy_helper.from_array(Q, "Q"),
            numpy_helper.from_array(T, "T"),
            numpy_helper.from_array(L, "L"),
            numpy_helper.from_array(c, "c"),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="apos-make-surrogate"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    spec = json.load(sys.stdin)
    model = build(spec)
    onnx.save(model, sys.argv[1])
    n = model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    m = model.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    json.dump({"path": sys.argv[1], "inputs": n, "outputs": m, "onnx": onnx.__version__}, sys.stdout)


if __name__ == "__main__":
    main()
