"""Experiment: the shipped model reads the digits, eleven-output networks only decide "not a
digit" (a gate; with several, their eleventh outputs averaged). So the arrays keep the shipped
model's accuracy, and what the gate costs is the correct answers it rejects.

    python gate.py cache/oe4.keras [cache/OTHER.keras ...] --name gate_oe4

At each rate of the validation digits' marks (the threshold), on the test and validation digits'
marks in the 7 clean renderings: the share rejected (all, the worst rendering), the shipped
model's accuracy in the worst rendering with rejects counted wrong (and before), and the share
of each kind of seed-2 negatives rejected. Printed and written to results/NAME.json.
"""
import argparse
import json
import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CACHE, HERE, MODEL  # noqa: E402
from negatives import KINDS  # noqa: E402

RATES = (0.0005, 0.001, 0.0015, 0.002)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("gates", nargs="+", help="eleven-output networks (.keras)")
    parser.add_argument("--name", required=True)
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow's threads (0: all cores)")
    args = parser.parse_args()
    import keras
    import tensorflow as tf
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    gates = [keras.models.load_model(path) for path in args.gates]
    shipped = keras.models.load_model(MODEL)

    def predict(net, marks):
        return net.predict(marks.reshape(-1, 28, 28, 1).astype(np.float32), batch_size=1000, verbose=0)

    def not_a_digit(marks):
        return np.mean([predict(gate, marks)[:, 10] for gate in gates], axis=0)

    sets = {}
    for split in ("test", "validation"):
        digits = np.load(CACHE / f"digits_{split}.npz")
        renderings = len(digits["marks"])
        sets[split] = (not_a_digit(digits["marks"]).reshape(renderings, -1),
                       predict(shipped, digits["marks"]).argmax(1).reshape(renderings, -1),
                       digits["labels"])
    negatives = {kind: not_a_digit(np.load(CACHE / f"neg_{kind}_s2.npz")["marks"]) for kind in KINDS}
    results = {"gates": args.gates}
    for rate in RATES:
        threshold = float(np.quantile(sets["validation"][0], 1 - rate))
        row = {"threshold": threshold}
        for split, (score, read, labels) in sets.items():
            rejected, right = score > threshold, read == labels
            row[split] = {"rejected": float(rejected.mean()),
                          "worst_rendering_rejected": float(rejected.mean(1).max()),
                          "worst_accuracy_before": float(right.mean(1).min()),
                          "worst_accuracy": float((right & ~rejected).mean(1).min())}
        row["negatives"] = {kind: float((score > threshold).mean()) for kind, score in negatives.items()}
        results[str(rate)] = row
        test, validation = row["test"], row["validation"]
        print(f"rate {rate}: threshold {threshold:.4f}; test digits rejected {test['rejected']:.3%} "
              f"(worst rendering {test['worst_rendering_rejected']:.3%}), accuracy in the worst "
              f"rendering {test['worst_accuracy']:.2%} (before {test['worst_accuracy_before']:.2%}); "
              f"validation {validation['rejected']:.3%}, {validation['worst_accuracy']:.2%} "
              f"(before {validation['worst_accuracy_before']:.2%}); "
              + ", ".join(f"{kind} {share:.1%}" for kind, share in row["negatives"].items()), flush=True)
    with open(HERE / "results" / f"{args.name}.json", "w") as file:
        json.dump(results, file, indent=1)


if __name__ == "__main__":
    main()
