"""Experiment: the shipped model reads the digits, eleven- or twelve-output networks only decide
"not a digit" (a gate: the outputs beyond the ten digits added up, "not a digit" and, for
benchmarks/touching/touch_recipe.py's networks, "digits that touch"; with several networks,
their outputs averaged first). So the arrays keep the shipped
model's accuracy, and what the gate costs is the correct answers it rejects.

    python gate.py cache/oe4.keras [cache/OTHER.keras ...] --name gate_oe4
    python gate.py cache/A.keras cache/B.keras cache/C.keras --name gate_abc --ship 0.0005
    python gate.py cache/joint_s1_gate.keras --reader cache/joint_s1_digits.keras --name gate_joint_s1
    python gate.py cache/touch12_s1.keras --name gate_touch12_s1 --ship 0.0005   # the shipped one

With --ship RATE, the gate (the networks' outputs averaged, as one Keras model) and its
threshold at that rate are written into the shipped model directory as not_a_digit/:
model.keras, model.tflite and settings.json, which `predict` and `serve` read.

At each rate of the validation digits' marks (the threshold), on the test and validation digits'
marks in the 7 clean renderings: the share rejected (all, the worst rendering), the shipped
model's (or --reader's) accuracy in the worst rendering with rejects counted wrong (and before),
and the share of each kind of seed-2 negatives rejected. Printed and written to
results/NAME.json.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CACHE, HERE, MODEL, export_litert  # noqa: E402
from negatives import KINDS  # noqa: E402

RATES = (0.0005, 0.001, 0.0015, 0.002)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("gates", nargs="+", help="eleven- or twelve-output networks (.keras)")
    parser.add_argument("--name", required=True)
    parser.add_argument("--reader", default=str(MODEL),
                        help="the ten-output network that reads the digits (default: the shipped "
                             "model; joint_recipe.py's NAME_digits.keras for its own)")
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow's threads (0: all cores)")
    parser.add_argument("--ship", type=float, metavar="RATE",
                        help="write the gate, at this rate of the validation digits, into the "
                             "shipped model directory")
    args = parser.parse_args()
    import keras
    import tensorflow as tf
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    gate = averaged([keras.models.load_model(path) for path in args.gates], keras)
    reader = keras.models.load_model(args.reader)

    def predict(net, marks):
        return net.predict(marks.reshape(-1, 28, 28, 1).astype(np.float32), batch_size=1000, verbose=0)

    def not_a_digit(marks):
        return predict(gate, marks)[:, 10:].sum(axis=1)

    sets = {}
    for split in ("test", "validation"):
        digits = np.load(CACHE / f"digits_{split}.npz")
        renderings = len(digits["marks"])
        sets[split] = (not_a_digit(digits["marks"]).reshape(renderings, -1),
                       predict(reader, digits["marks"]).argmax(1).reshape(renderings, -1),
                       digits["labels"])
    negatives = {kind: not_a_digit(np.load(CACHE / f"neg_{kind}_s2.npz")["marks"]) for kind in KINDS}
    def threshold_at(rate):  # the score above which that share of the validation digits' marks lie
        return float(np.quantile(sets["validation"][0], 1 - rate))

    results = {"gates": args.gates, "reader": args.reader}
    for rate in RATES:
        threshold = threshold_at(rate)
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
    if args.ship:
        rate = args.ship
        ship(gate, {"threshold": threshold_at(rate), "rate": rate, "networks": args.gates,
                    "made_by": f"benchmarks/not_a_digit/gate.py --ship {rate}",
                    "results": f"benchmarks/not_a_digit/results/{args.name}.json"})


def averaged(networks, keras):
    """One Keras model: the networks' probabilities averaged (one network as it is)."""
    networks = [uncompiled(network, f"network_{i + 1}", keras) for i, network in enumerate(networks)]
    if len(networks) == 1:
        return networks[0]
    image = keras.Input((28, 28, 1), name="image")
    outputs = keras.layers.Average(name="probabilities")([network(image) for network in networks])
    return keras.Model(image, outputs, name="not_a_digit")


def uncompiled(network, name, keras):
    """The network without its optimizer's state (a third of the file), named `name`."""
    copy = type(network).from_config(network.get_config())
    copy.set_weights(network.get_weights())
    copy.name = name
    return copy


def ship(gate, settings):
    """not_a_digit/ in the shipped model directory: model.keras, model.tflite, settings.json."""
    folder = MODEL.parent / "not_a_digit"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    gate.save(folder / "model.keras")
    export_litert(gate, folder / "model.tflite")
    (folder / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    print(f"wrote {folder}: threshold {settings['threshold']:.6f}")


if __name__ == "__main__":
    main()
