#!/usr/bin/env python3
"""onnxruntime timing for `apos-bench forecast`: the same model and inputs
as tract. Reads {"model", "rows", "single_runs"} JSON on stdin; prints
{"single_us": [per-call µs…], "batch_s": seconds for all rows in one call,
"version"}. One intra-op thread, like tract's single-threaded plan."""

import json
import sys
import time

import numpy as np
import onnxruntime as ort

req = json.load(sys.stdin)
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
sess = ort.InferenceSession(req["model"], sess_options=opts, providers=["CPUExecutionProvider"])
name = sess.get_inputs()[0].name
x = np.asarray(req["rows"], dtype=np.float32)
for i in range(50):  # warm-up
    sess.run(None, {name: x[i % len(x) : i % len(x) + 1]})
single = []
for i in range(req["single_runs"]):
    row = x[i % len(x) : i % len(x) + 1]
    t = time.perf_counter()
    sess.run(None, {name: row})
    single.append((time.perf_counter() - t) * 1e6)
t = time.perf_counter()
sess.run(None, {name: x})
batch = time.perf_counter() - t
json.dump({"single_us": single, "batch_s": batch, "version": ort.__version__}, sys.stdout)
