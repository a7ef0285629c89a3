#!/usr/bin/env python3
"""Train a linear forecaster and export it as an APOS model directory.

A model directory holds `model.onnx` and `manifest.toml`; the edge's Rust
feature pipeline (crate `models`, module `features`) builds exactly the
feature vector described by the manifest, so this file and that module are
two implementations of one specification (docs/models.md) and a test
compares them on the same rows.

The model is NLinear-style ridge regression: the input lags minus the last
observed value, a closed-form ridge fit of the next `horizon` values (minus
that same last value), with the ridge strength chosen on the validation
split. Everything is linear, so the exported graph is one MatMul and one Add
(the last-value subtraction folded into the weights), per-feature
attributions are exact, and tract runs it.

Two uses:

  # the standard ETTh1 benchmark (univariate "S", target OT, 336 → 96)
  python3 models/train/train_forecaster.py etth1 --data ../shared/data/ETTh1.csv \
      --out models/assets/etth1-ot

  # any CSV of hourly (or other step) history, e.g. the simulated plant's
  python3 models/train/train_forecaster.py csv --data history.csv --target heater.outlet_temp \
      --step 1m --lookback 120 --horizon 30 --derived 10 --out models/assets/plant-heater-outlet

Needs numpy and onnx (onnxruntime only for --verify). No torch.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import math
import os
import sys
import time

import numpy as np

ROLLING = ("mean", "std", "min", "max")


# --------------------------------------------------------------------------
# Features: the specification shared with the Rust pipeline.
# --------------------------------------------------------------------------


def feature_names(spec: dict) -> list[str]:
    """Names of the feature vector's entries, in order."""
    names = []
    for tag in spec["tags"]:
        names += [f"{tag}[t-{k}]" for k in range(spec["lags"] - 1, -1, -1)]
    for tag in spec["tags"]:
        for w in spec["rolling"]:
            names += [f"{tag}.rolling_{s}_{w}" for s in ROLLING]
    if spec["time_of_day"]:
        names += ["time_of_day.sin", "time_of_day.cos"]
    if spec["day_of_week"]:
        names += ["day_of_week.sin", "day_of_week.cos"]
    return names


def features(spec: dict, norm: dict, series: dict[str, np.ndarray], ts: np.ndarray, end: int) -> np.ndarray:
    """The feature vector for a forecast made after row `end - 1` (the last
    observed row). `series` are raw values per tag on a regular grid, `ts`
    the grid's timestamps (seconds since the epoch, UTC).

    - lags: the last `lags` values of each tag, oldest first, z-normalised;
    - rolling mean/std (population)/min/max over the last `w` rows of each
      tag, z-normalised with the tag's mean and std (std: divided by std);
    - time of day and day of week of the forecast origin (the last observed
      row's timestamp plus one step), as sin/cos pairs.
    """
    out = []
    for tag in spec["tags"]:
        m, s = norm[tag]
        x = series[tag][end - spec["lags"] : end]
        out.append((x - m) / s)
    for tag in spec["tags"]:
        m, s = norm[tag]
        for w in spec["rolling"]:
            x = series[tag][end - w : end]
            out.append(np.array([(x.mean() - m) / s, x.std() / s, (x.min() - m) / s, (x.max() - m) / s]))
    origin = ts[end - 1] + spec["step_s"]
    if spec["time_of_day"]:
        a = 2 * math.pi * (origin % 86400) / 86400
        out.append(np.array([math.sin(a), math.cos(a)]))
    if spec["day_of_week"]:
        # 1970-01-01 was a Thursday; Monday = 0.
        a = 2 * math.pi * (((origin // 86400) + 3) % 7) / 7
        out.append(np.array([math.sin(a), math.cos(a)]))
    return np.concatenate(out)


def history_needed(spec: dict) -> int:
    return max([spec["lags"]] + list(spec["rolling"]))


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def read_csv(path: str, tags: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"{path}: no rows")
    time_col = next((c for c in ("date", "ts", "time", "timestamp") if c in rows[0]), None)
    if time_col is None:
        sys.exit(f"{path}: needs a date/ts/time/timestamp column")
    missing = [t for t in tags if t not in rows[0]]
    if missing:
        sys.exit(f"{path}: no column {missing}; columns are {list(rows[0])}")
    ts = np.array([parse_time(r[time_col]) for r in rows], dtype=np.int64)
    return ts, {t: np.array([float(r[t]) for r in rows]) for t in tags}


def parse_time(s: str) -> int:
    s = s.strip()
    if s.replace(".", "", 1).isdigit():
        v = float(s)
        return int(v / 1000) if v > 1e11 else int(v)  # ms or s
    d = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    return int(d.timestamp())


def parse_step(s: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return int(float(s[:-1]) * units[s[-1]])


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------


def design(spec, norm, series, ts, ends):
    return np.stack([features(spec, norm, series, ts, e) for e in ends])


def targets(spec, norm, series, ends):
    m, s = norm[spec["target"]]
    y = series[spec["target"]]
    return np.stack([(y[e : e + spec["horizon"]] - m) / s for e in ends])


def last_index(spec) -> int:
    """Feature index of the target's last observed value."""
    return (spec["tags"].index(spec["target"]) + 1) * spec["lags"] - 1


def fit_ridge(X: np.ndarray, Y: np.ndarray, spec: dict, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """NLinear ridge: with x_last the target's last observed value,
    Y - x_last ≈ [target lags - x_last, other features] W + b, solved in
    closed form, then folded back into one linear map y = X W' + b."""
    last = last_index(spec)
    first = last + 1 - spec["lags"]
    xl = X[:, last : last + 1]
    D = X.copy()
    D[:, first : last + 1] -= xl
    F = np.concatenate([D, np.ones((len(D), 1))], 1)
    A = F.T @ F
    reg = np.full(F.shape[1], alpha)
    reg[-1] = 0.0
    A[np.diag_indices_from(A)] += reg
    sol = np.linalg.solve(A, F.T @ (Y - xl))
    W, b = sol[:-1], sol[-1]
    # y = (X_T - xl) W_T + X_rest W_rest + b + xl: fold xl's coefficient into W[last].
    Wf = W.copy()
    Wf[last] += 1.0 - W[first : last + 1].sum(axis=0)
    return Wf, b


def mse_mae(P, Y):
    return float(((P - Y) ** 2).mean()), float(np.abs(P - Y).mean())


def export_onnx(path: str, W: np.ndarray, b: np.ndarray, names: list[str], meta: dict) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n_in, n_out = W.shape
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["forecast"]),
        ],
        "apos_linear_forecaster",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("forecast", TensorProto.FLOAT, ["batch", n_out])],
        [
            numpy_helper.from_array(W.astype(np.float32), "W"),
            numpy_helper.from_array(b.astype(np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="apos-train")
    model.ir_version = 8
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key, p.value = k, str(v)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(type(v))


def write_manifest(path: str, m: dict) -> None:
    lines = [
        "# APOS forecasting model manifest (docs/models.md). Written by",
        "# models/train/train_forecaster.py; the edge validates it against model.onnx.",
    ]
    for k, v in m.items():
        if not isinstance(v, dict):
            lines.append(f"{k} = {toml_value(v)}")
    for k, v in m.items():
        if isinstance(v, dict):
            lines.append("")
            lines.append(f"[{k}]")
            for kk, vv in v.items():
                if isinstance(vv, dict):
                    continue
                lines.append(f"{json.dumps(kk) if '.' in kk else kk} = {toml_value(vv)}")
            for kk, vv in v.items():
                if isinstance(vv, dict):
                    lines.append("")
                    lines.append(f"[{k}.{json.dumps(kk) if '.' in kk else kk}]")
                    for k3, v3 in vv.items():
                        lines.append(f"{k3} = {toml_value(v3)}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def train(args, spec, ts, series, split, protocol: str) -> None:
    """split: (train_end, val_end, test_end) row indices; windows whose
    targets lie in a split, inputs may reach back into the previous one."""
    tr_end, va_end, te_end = split
    need, H = history_needed(spec), spec["horizon"]
    norm = {t: (float(series[t][:tr_end].mean()), float(series[t][:tr_end].std())) for t in spec["tags"]}
    ranges = {
        "train": range(need, tr_end - H + 1),
        "validation": range(tr_end, va_end - H + 1),
        "test": range(va_end, te_end - H + 1),
    }
    X, Y = {}, {}
    for k, r in ranges.items():
        X[k] = design(spec, norm, series, ts, r)
        Y[k] = targets(spec, norm, series, r)
    last = last_index(spec)
    naive = {k: mse_mae(np.repeat(X[k][:, last : last + 1], H, 1), Y[k]) for k in ranges}
    best = None
    for alpha in args.alphas:
        W, b = fit_ridge(X["train"], Y["train"], spec, alpha)
        v = mse_mae(X["validation"] @ W + b, Y["validation"])
        print(f"  alpha {alpha:>8g}: validation MSE {v[0]:.4f} MAE {v[1]:.4f}", file=sys.stderr)
        if best is None or v[0] < best[0][0]:
            best = (v, alpha, W, b)
    (val, alpha, W, b) = best
    test = mse_mae(X["test"] @ W + b, Y["test"])
    print(f"windows: train {len(X['train'])}, validation {len(X['validation'])}, test {len(X['test'])}")
    print(f"repeat last value  test MSE {naive['test'][0]:.4f}  MAE {naive['test'][1]:.4f}")
    print(f"NLinear ridge      test MSE {test[0]:.4f}  MAE {test[1]:.4f}  (alpha {alpha:g}, chosen on validation)")

    os.makedirs(args.out, exist_ok=True)
    names = feature_names(spec)
    target_m, target_s = norm[spec["target"]]
    manifest = {
        "schema_version": 1,
        "name": args.name or os.path.basename(os.path.normpath(args.out)),
        "version": args.version,
        "description": args.description,
        "input": {
            "tags": spec["tags"],
            "step": args.step,
            "lags": spec["lags"],
            "window": f"{history_needed(spec) * int(args.step[:-1])}{args.step[-1]}",
            "rolling": list(spec["rolling"]),
            "time_of_day": spec["time_of_day"],
            "day_of_week": spec["day_of_week"],
            "features": len(names),
        },
        "normalization": {t: {"mean": norm[t][0], "std": norm[t][1]} for t in spec["tags"]},
        "output": {
            "tag": spec["target"],
            "horizon": H,
            "step": args.step,
            "normalized": True,
            "mean": target_m,
            "std": target_s,
        },
        "training": {
            "script": "models/train/train_forecaster.py",
            "protocol": protocol,
            "data": os.path.basename(args.data),
            "data_sha256": hashlib.sha256(open(args.data, "rb").read()).hexdigest(),
            "rows": [0, int(te_end)],
            "split": [int(tr_end), int(va_end), int(te_end)],
            "model": "NLinear ridge (linear; exact attributions)",
            "alpha": float(alpha),
            "validation_mse": round(val[0], 6),
            "validation_mae": round(val[1], 6),
            "test_mse": round(test[0], 6),
            "test_mae": round(test[1], 6),
            "naive_test_mse": round(naive["test"][0], 6),
            "naive_test_mae": round(naive["test"][1], 6),
            "trained_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }
    export_onnx(
        os.path.join(args.out, "model.onnx"),
        W,
        b,
        names,
        {"apos.name": manifest["name"], "apos.version": args.version, "apos.features": len(names), "apos.horizon": H},
    )
    write_manifest(os.path.join(args.out, "manifest.toml"), manifest)
    print(f"wrote {args.out}/model.onnx and manifest.toml ({len(names)} features → {H} steps)")

    if args.verify:
        import onnxruntime as ort

        sess = ort.InferenceSession(os.path.join(args.out, "model.onnx"), providers=["CPUExecutionProvider"])
        P = sess.run(None, {"features": X["test"].astype(np.float32)})[0]
        onnx_test = mse_mae(P, Y["test"])
        print(f"onnxruntime        test MSE {onnx_test[0]:.4f}  MAE {onnx_test[1]:.4f}  (float32 graph)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["etth1", "csv", "features"])
    p.add_argument("--data", required=True)
    p.add_argument("--out", help="model directory to write")
    p.add_argument("--target", default="OT")
    p.add_argument("--tags", help="comma-separated input tags (default: the target)")
    p.add_argument("--step", default="1h")
    p.add_argument("--lookback", type=int, default=336)
    p.add_argument("--horizon", type=int, default=96)
    p.add_argument("--rolling", default="", help="comma-separated rolling windows in steps, e.g. 10,60")
    p.add_argument("--time-features", action="store_true", help="add time of day and day of week")
    p.add_argument("--split", default="0.6,0.2,0.2", help="csv mode: train,validation,test fractions")
    p.add_argument("--alphas", default="1,10,100,300,1000,3000,10000,30000")
    p.add_argument("--name")
    p.add_argument("--version", default="1.0.0")
    p.add_argument("--description", default="")
    p.add_argument("--verify", action="store_true", help="re-evaluate the exported graph with onnxruntime")
    p.add_argument("--manifest", help="features mode: the model's manifest.toml")
    p.add_argument("--ends", help="features mode: comma-separated row indices (forecast after row end-1)")
    args = p.parse_args()
    args.alphas = [float(a) for a in args.alphas.split(",")]

    if args.mode == "features":
        # Print the feature vectors of a manifest for the given rows, as JSON:
        # the Rust pipeline's test compares against this.
        import tomllib

        m = tomllib.load(open(args.manifest, "rb"))
        spec = spec_from_manifest(m)
        ts, series = read_csv(args.data, spec["tags"])
        norm = {t: (m["normalization"][t]["mean"], m["normalization"][t]["std"]) for t in spec["tags"]}
        ends = [int(e) for e in args.ends.split(",")]
        json.dump({str(e): features(spec, norm, series, ts, e).tolist() for e in ends}, sys.stdout)
        return

    if not args.out:
        p.error("--out is required")
    tags = args.tags.split(",") if args.tags else [args.target]
    if args.target not in tags:
        tags = [args.target] + tags
    spec = {
        "tags": tags,
        "target": args.target,
        "lags": args.lookback,
        "horizon": args.horizon,
        "rolling": [int(w) for w in args.rolling.split(",") if w],
        "time_of_day": args.time_features,
        "day_of_week": args.time_features,
        "step_s": parse_step(args.step),
    }
    ts, series = read_csv(args.data, tags)
    t0 = time.time()
    # The manifest names the data it was given, whatever the mode.
    dataset = os.path.splitext(os.path.basename(args.data))[0]
    inputs = "univariate" if tags == [args.target] else f"inputs {', '.join(tags)}"
    if args.mode == "etth1":
        if len(ts) < 14400:
            sys.exit(f"{args.data}: {len(ts)} rows; the ETT 12/4/4-month protocol needs 14,400")
        if not dataset.upper().startswith("ETT"):
            print(f"note: {dataset} is not an ETT dataset; its rows are split as ETT's 12/4/4 months", file=sys.stderr)
        # 12/4/4 months of 30 days: rows [0, 8640), [8640, 11520), [11520, 14400).
        args.description = args.description or (
            f"{dataset} {args.target}, {inputs}, {args.lookback} × {args.step} → {args.horizon} × {args.step}"
        )
        train(
            args,
            spec,
            ts,
            series,
            (8640, 11520, 14400),
            f"{dataset} {args.target} ({inputs}), L={args.lookback} H={args.horizon}, "
            "12/4/4 months of 30 days, z-norm on train",
        )
    else:
        fr = [float(x) for x in args.split.split(",")]
        n = len(ts)
        split = (int(n * fr[0]), int(n * (fr[0] + fr[1])), n)
        args.description = args.description or (
            f"{args.target} from {dataset} ({inputs}), {args.lookback} × {args.step} → {args.horizon} × {args.step}"
        )
        train(
            args,
            spec,
            ts,
            series,
            split,
            f"{dataset} {args.target} ({inputs}), L={args.lookback} H={args.horizon}, chronological {args.split} split",
        )
    print(f"({time.time() - t0:.1f} s)", file=sys.stderr)


def spec_from_manifest(m: dict) -> dict:
    i = m["input"]
    return {
        "tags": i["tags"],
        "target": m["output"]["tag"],
        "lags": i["lags"],
        "horizon": m["output"]["horizon"],
        "rolling": i["rolling"],
        "time_of_day": i["time_of_day"],
        "day_of_week": i["day_of_week"],
        "step_s": parse_step(i["step"]),
    }


if __name__ == "__main__":
    main()
