#!/usr/bin/env python3
"""onnxruntime as the independent peer of tract: run a model on float32
inputs given as JSON on stdin ({"model": path, "rows": [[...], ...]}) and
print {"outputs": [[...], ...], "version": onnxruntime version}."""

import json
import sys

import numpy as np
import onnxruntime as ort

req = json.load(sys.stdin)
sess = ort.InferenceSession(req["model"], providers=["CPUExecutionProvider"])
x = np.asarray(req["rows"], dtype=np.float32)
(y,) = sess.run(None, {sess.get_inputs()[0].name: x})
json.dump({"outputs": y.astype(float).tolist(), "version": ort.__version__}, sys.stdout)
