"""Experiment: one network, two outputs on one trunk. The ten digits ("digits") trained as the
default recipe trains them (the 54,000 training arrays, augmented; its schedule, dropout and
15 epochs), and an eleven-way output ("not_a_digit": the ten digits or not a digit) trained in
the same steps on what the reader sees, not augmented (the training digits' marks, the extra
digits, the negatives of the training kinds). Each step takes a batch of each; each output's
loss counts only its own half. Reading a mark then costs one network, not two (gate.py's
second network took 0.71 of serve's throughput), and the trunk learns the negatives, which
heads on the digit network's features (62-71%) could not.

    python joint_recipe.py --seed 1 [--epochs 15] [--kinds font_letters scribbles digit_overlaps]
                           [--extra-digits stroke_digits_s1 font_digits_s1] [--threads 2]

    python joint_recipe.py --speed    # LiteRT, one mark at a time: both outputs against the
                                      # ten-output part alone (taking turns, one thread)

Resumable (the same command continues a stopped run from its last epoch: cache/NAME/).
Writes cache/NAME.keras (both outputs), cache/NAME_digits.keras (the ten-output part, as
model.keras is) and cache/NAME_gate.keras (the eleven-output part), results/NAME.json (the
history and the digit output's accuracy on the arrays); then measure with
    python gate.py cache/NAME_gate.keras --reader cache/NAME_digits.keras --name gate_NAME
"""
import argparse
import dataclasses
import json
import math
import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CACHE, HERE, N_TRAIN, export_litert, mnist  # noqa: E402
from oe_recipe import TRAIN_KINDS, negative_marks  # noqa: E402

NO_LABEL = -1  # the other output's half of a batch


def two_output_network(mdr, keras):
    """The default network's trunk with two softmax outputs: digits (10) and not_a_digit (11)."""
    base = mdr.build_model()
    image = keras.Input(mdr.IMAGE_SHAPE, name="image")
    features = image
    for layer in base.layers[:-1]:
        features = layer(features)
    digits = keras.layers.Dense(10, activation="softmax", dtype="float32", name="digits")(features)
    gate = keras.layers.Dense(11, activation="softmax", dtype="float32",
                              name="not_a_digit")(features)
    return keras.Model(image, {"digits": digits, "not_a_digit": gate}, name="cnn_joint")


def masked_cross_entropy(keras):
    def loss(labels, probabilities):
        labels = keras.ops.reshape(labels, (-1,))
        mask = keras.ops.cast(labels >= 0, "float32")
        each = keras.losses.sparse_categorical_crossentropy(keras.ops.maximum(labels, 0),
                                                            probabilities)
        return keras.ops.sum(each * mask) / keras.ops.maximum(keras.ops.sum(mask), 1.0)
    return loss


def reader_images(kinds, extra_digits):
    """(x, y) the eleven-way output learns from: the training digits' marks, the extra digits,
    the single-mark negatives of the kinds (label 10)."""
    arrays = mnist()
    extra = [np.load(CACHE / f"{name}.npz") for name in extra_digits]
    negatives = np.concatenate([negative_marks(kind, True) for kind in kinds])
    x = np.concatenate([np.load(CACHE / "digits_train.npz")["marks"][0],
                        *(e["marks"] for e in extra), negatives])[..., np.newaxis]
    y = np.concatenate([arrays["y_train"][:N_TRAIN], *(e["labels"] for e in extra),
                        np.full(len(negatives), 10)])
    return x.astype(np.float32), y.astype(np.int32)


def joint_batches(tf, arrays, reader, batch_size, augment, seed):
    """Endless batches: batch_size augmented arrays (digits' labels) followed by batch_size
    reader images (eleven-way labels), each output's labels NO_LABEL on the other half."""
    (xa, ya), (xr, yr) = arrays, reader
    digits = (tf.data.Dataset.from_tensor_slices((xa, ya.astype(np.int32))).repeat()
              .shuffle(len(xa), seed=seed).batch(batch_size, drop_remainder=True).enumerate()
              .map(lambda step, b: (augment(b[0], tf.stack([seed, tf.cast(step, tf.int32)])),
                                    b[1]), num_parallel_calls=tf.data.AUTOTUNE))
    marks = (tf.data.Dataset.from_tensor_slices((xr, yr)).repeat()
             .shuffle(len(xr), seed=seed + 1).batch(batch_size, drop_remainder=True))
    none = tf.fill([batch_size], NO_LABEL)

    def joined(d, m):
        return (tf.concat([d[0], m[0]], 0),
                {"digits": tf.concat([d[1], none], 0), "not_a_digit": tf.concat([none, m[1]], 0)})
    return tf.data.Dataset.zip(digits, marks).map(joined).prefetch(tf.data.AUTOTUNE)


def speed(mdr, keras, rounds=30, calls=100):
    """ms per mark on LiteRT's interpreter (one thread, as the product runs it) of the network
    (untrained: the time does not depend on the weights) with both outputs and of its ten-output
    part alone, taking turns; written to results/joint_speed.json."""
    import platform
    import tempfile

    from ai_edge_litert.interpreter import Interpreter
    joint = two_output_network(mdr, keras)
    networks = {"digits": keras.Model(joint.input, joint.get_layer("digits").output),
                "both outputs": joint}
    runs, times = {}, {name: [] for name in networks}
    with tempfile.TemporaryDirectory() as folder:
        for name, network in networks.items():
            path = os.path.join(folder, f"{len(runs)}.tflite")
            export_litert(network, path)
            interpreter = Interpreter(model_path=path, num_threads=1)
            interpreter.allocate_tensors()
            runs[name] = interpreter
    image = np.random.default_rng(0).random((1, 28, 28, 1), np.float32)
    ports = {name: (interpreter.get_input_details()[0]["index"],
                    [d["index"] for d in interpreter.get_output_details()])
             for name, interpreter in runs.items()}  # looked up once, as the product does
    for _ in range(rounds):
        for name, interpreter in runs.items():
            image_in, outputs = ports[name]
            started = time.perf_counter()
            for _ in range(calls):
                interpreter.set_tensor(image_in, image)
                interpreter.invoke()
                [interpreter.get_tensor(index) for index in outputs]
            times[name].append((time.perf_counter() - started) / calls * 1000)
    from mnist_digits.hardware import cpu_info
    cpu, flags = cpu_info()
    results = {"cpu": cpu, "avx512": "avx512f" in flags, "machine": platform.machine(),
               "rounds": rounds, "calls": calls,
               **{f"{name} ms": float(np.median(t)) for name, t in times.items()}}
    results["ratio"] = results["both outputs ms"] / results["digits ms"]
    print(json.dumps(results, indent=1))
    (HERE / "results" / "joint_speed.json").write_text(json.dumps(results, indent=1) + "\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--kinds", nargs="+", default=TRAIN_KINDS)
    parser.add_argument("--extra-digits", nargs="+", default=["stroke_digits_s1", "font_digits_s1"])
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow's threads (0: all cores)")
    parser.add_argument("--speed", action="store_true", help="time the two outputs, then stop")
    parser.add_argument("--steps-per-epoch", type=int,
                        help="fewer steps: a quick check of the script")
    args = parser.parse_args()
    import keras
    import tensorflow as tf
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    import mnist_digit_recognition as mdr
    if args.speed:
        return speed(mdr, keras)

    name = "".join(["joint_", f"e{args.epochs}_" if args.epochs != 15 else "",
                    f"steps{args.steps_per_epoch}_" if args.steps_per_epoch else "",
                    *(f"{kind}_" for kind in args.kinds if kind not in TRAIN_KINDS),
                    f"s{args.seed}"])
    recipe = dataclasses.replace(mdr.RECIPE, seed=args.seed, epochs=args.epochs)
    keras.utils.set_random_seed(args.seed)
    arrays = mnist()
    x = arrays["x_train"].astype(np.float32)[..., np.newaxis] / 255
    y = arrays["y_train"]
    train_arrays, validation = (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:])
    reader = reader_images(args.kinds, args.extra_digits)
    print(f"{len(train_arrays[0])} arrays (augmented), {len(reader[0])} reader images "
          f"({int((reader[1] == 10).sum())} not a digit)", flush=True)

    network = two_output_network(mdr, keras)
    loss = masked_cross_entropy(keras)
    network.compile(optimizer=keras.optimizers.Adam(), loss={"digits": loss, "not_a_digit": loss})
    steps = args.steps_per_epoch or math.ceil(len(train_arrays[0]) / recipe.batch_size)
    data = joint_batches(tf, train_arrays, reader, recipe.batch_size, mdr.make_augmenter(recipe),
                         args.seed)
    x_val, y_val = validation
    validation_data = (x_val, {"digits": y_val.astype(np.int32),
                               "not_a_digit": y_val.astype(np.int32)})
    late_dropout, restore_dropout = mdr.dropout_from_epoch(network,
                                                           recipe.resolved().dropout_from_epoch)
    history = []
    callbacks = [
        keras.callbacks.BackupAndRestore(str(CACHE / name)), late_dropout,
        keras.callbacks.LearningRateScheduler(mdr.learning_rate_schedule(recipe)),
        keras.callbacks.ReduceLROnPlateau(monitor="val_digits_loss", mode="min",
                                          factor=recipe.lr_factor, patience=recipe.plateau_patience,
                                          min_lr=recipe.min_learning_rate),
        mdr.epoch_logger(history)]
    started = time.time()
    network.fit(data, epochs=recipe.epochs, steps_per_epoch=steps, validation_data=validation_data,
                validation_batch_size=1000, callbacks=callbacks, verbose=2)
    restore_dropout()
    print(f"trained in {time.time() - started:.0f} s", flush=True)

    network.save(CACHE / f"{name}.keras")
    image = network.input
    for part in ("digits", "gate"):
        output = network.get_layer("digits" if part == "digits" else "not_a_digit").output
        keras.Model(image, output, name=f"cnn_{part}").save(CACHE / f"{name}_{part}.keras")
    test = network.predict(arrays["x_test"].astype(np.float32)[..., np.newaxis] / 255,
                           batch_size=1000, verbose=0)["digits"]
    val = network.predict(x_val, batch_size=1000, verbose=0)["digits"]
    results = {"args": vars(args), "reader_images": len(reader[0]), "history": history,
               "arrays_test_acc": float((test.argmax(1) == arrays["y_test"]).mean()),
               "arrays_val_acc": float((val.argmax(1) == y_val).mean())}
    print(f"digits output: arrays test {results['arrays_test_acc']:.2%}, "
          f"validation {results['arrays_val_acc']:.2%}")
    (HERE / "results" / f"{name}.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
