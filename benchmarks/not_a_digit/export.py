"""Export a "not a digit" head with the shipped network, and measure the exported files.

    python export.py [--decider "MLP 32"] [--protocol T] [--rate 0.0005] [--out export]

Fits the decider as evaluate.py does (same class, seed and training kinds), puts its threshold
into its last bias (so that the output is > 0 exactly when the mark is not a digit), and writes:
    export/not_a_digit_head.keras   the head alone: 128 features (the Flatten output of
                                    model.keras) -> 1 logit, threshold included
    export/not_a_digit.tflite       the whole network with two outputs: "probabilities" (N, 10),
                                    as model.tflite, and "not_a_digit" (N, 1), > 0: not a digit
    export/not_a_digit.json         how it was made (decider, kinds, rate, threshold, command)
Then reads every cached set through the .tflite on LiteRT (the product's path) and reports the
same rows as evaluate.py from its outputs, the agreement with the Keras-side decision, and
milliseconds per mark for model.tflite and not_a_digit.tflite (one mark per invoke, 1 thread).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import CACHE  # noqa: E402
import evaluate  # noqa: E402
from features import MODEL  # noqa: E402
from negatives import KINDS  # noqa: E402

SHIPPED_TFLITE = MODEL.parent / "model.tflite"


def folded_head(decider, threshold):
    """The fitted Head (evaluate.Head: layers [(W, b), ...] on standardised inputs) as a Keras
    model on the raw 128 features: the standardisation folded into the first Dense layer, the
    threshold subtracted from the last bias (output > 0: not a digit)."""
    import keras

    weights = [(W.astype(np.float32), b.astype(np.float32)) for W, b in decider.layers]
    W0, b0 = weights[0]
    weights[0] = (W0 / decider.std[:, np.newaxis], b0 - (decider.mean / decider.std) @ W0)
    weights[-1] = (weights[-1][0], weights[-1][1] - threshold)
    inputs = keras.Input((len(decider.mean),), name="features")
    x = inputs
    dense = []
    for i, (W, b) in enumerate(weights):
        last = i == len(weights) - 1
        dense.append(keras.layers.Dense(W.shape[1], activation=None if last else "relu",
                                        name="not_a_digit" if last else f"head_{i}"))
        x = dense[-1](x)
    head = keras.Model(inputs, x, name="not_a_digit_head")
    for layer, (W, b) in zip(dense, weights):
        layer.set_weights([W, b])
    return head


def two_output_model(head):
    import keras

    model = keras.models.load_model(MODEL)
    flatten = next(layer for layer in model.layers if type(layer).__name__ == "Flatten")
    return keras.Model(model.inputs, {"probabilities": model.get_layer("probabilities").output,
                                      "not_a_digit": head(flatten.output)})


def to_tflite(model, path):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    path.write_bytes(converter.convert())


class Lite:
    def __init__(self, path):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(str(path), num_threads=1)
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.outputs = {d["name"]: d["index"] for d in self.interpreter.get_output_details()}

    def run(self, marks, batch=1000):
        out = {name: [] for name in self.outputs}
        for start in range(0, len(marks), batch):
            chunk = marks[start:start + batch, ..., np.newaxis].astype(np.float32)
            self.interpreter.resize_tensor_input(self.input, chunk.shape)
            self.interpreter.allocate_tensors()
            self.interpreter.set_tensor(self.input, chunk)
            self.interpreter.invoke()
            for name, index in self.outputs.items():
                out[name].append(self.interpreter.get_tensor(index).copy())
        return {name: np.concatenate(v) for name, v in out.items()}

    def ms_per_mark(self, marks):
        self.interpreter.resize_tensor_input(self.input, (1, 28, 28, 1))
        self.interpreter.allocate_tensors()
        for mark in marks[:20]:  # warm up
            self.interpreter.set_tensor(self.input, mark[np.newaxis, ..., np.newaxis])
            self.interpreter.invoke()
        start = time.process_time()
        for mark in marks:
            self.interpreter.set_tensor(self.input, mark[np.newaxis, ..., np.newaxis])
            self.interpreter.invoke()
        return 1000 * (time.process_time() - start) / len(marks)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--decider", default="MLP 32")
    parser.add_argument("--protocol", choices=["T", "V"], default="T")
    parser.add_argument("--rate", type=float, default=0.0005)
    parser.add_argument("--train-kinds", nargs="+", default=list(evaluate.TRAIN_KINDS))
    parser.add_argument("--out", default="export")
    args = parser.parse_args()
    out = HERE / args.out
    out.mkdir(exist_ok=True)
    data = evaluate.load_all()
    decider = next(d for d in evaluate.default_deciders() if d.name == args.decider)
    sets = ["train", "validation", "test"] + [f"neg_{k}_s2" for k in KINDS if f"neg_{k}_s2" in data]
    decider, keras_scores = evaluate.fitted(decider, data, args.train_kinds, sets)
    reference = "train" if args.protocol == "T" else "validation"
    threshold = float(np.quantile(keras_scores[reference], 1 - args.rate))
    head = folded_head(decider, threshold)
    head.save(out / "not_a_digit_head.keras")
    to_tflite(two_output_model(head), out / "not_a_digit.tflite")
    lite = Lite(out / "not_a_digit.tflite")
    shipped = Lite(SHIPPED_TFLITE)

    lite_view, agreement = {}, {}
    sets = {"train": CACHE / "digits_train.npz", "validation": CACHE / "digits_validation.npz",
            "test": CACHE / "digits_test.npz"}
    sets.update({f"neg_{k}_s2": CACHE / f"neg_{k}_s2.npz" for k in KINDS
                 if (CACHE / f"neg_{k}_s2.npz").exists()})
    for name, path in sets.items():
        marks = np.load(path)["marks"]
        shape = marks.shape[:-2]
        result = lite.run(marks.reshape(-1, 28, 28))
        score = result["not_a_digit"][:, 0].reshape(shape)
        probabilities = result["probabilities"].reshape(*shape, 10)
        lite_view[name] = score
        keras_decision = keras_scores[name] > threshold
        agreement[name] = {"marks": int(score.size),
                           "decisions_differ": int(((score > 0) != keras_decision).sum()),
                           "largest_probability_difference": float(np.abs(
                               probabilities - data[name]["probabilities"]).max())}
        if name in ("validation", "test", "train"):
            data[name] = dict(data[name], probabilities=probabilities)
    row = evaluate.measure(lite_view, 0.0, data, [s for s in sets if s.startswith("neg_")])
    row.update(decider=args.decider, protocol=args.protocol, rate=args.rate, threshold=threshold)

    test_marks = np.load(CACHE / "digits_test.npz")["marks"][2, :2000]
    timing = {"model.tflite": shipped.ms_per_mark(test_marks),
              "not_a_digit.tflite": lite.ms_per_mark(test_marks)}
    timing["model.tflite again"] = shipped.ms_per_mark(test_marks)
    sizes = {p.name: p.stat().st_size for p in out.iterdir()}
    sizes["model.tflite (shipped)"] = SHIPPED_TFLITE.stat().st_size
    command = "python export.py " + " ".join(sys.argv[1:])
    info = {"command": command, "decider": args.decider, "train_kinds": args.train_kinds,
            "protocol": args.protocol, "rate": args.rate, "threshold_in_bias": threshold,
            "rule": "not a digit when the not_a_digit output > 0", "sizes_bytes": sizes,
            "ms_per_mark_litert_1_thread_cpu_time": timing, "agreement_keras_vs_litert": agreement}
    (out / "not_a_digit.json").write_text(json.dumps(info, indent=1) + "\n")
    (out / "measured.json").write_text(json.dumps({"command": command, "result": row}, indent=1))
    print(json.dumps(info, indent=1))
    print(evaluate.table([row], args.train_kinds, evaluate.HELD_OUT))


if __name__ == "__main__":
    main()
