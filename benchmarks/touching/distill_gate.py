"""A cheaper "not a digit" network for issue 32's speed bar: a network with fewer positions
(stride 2 in its second and fifth convolutions: 6.0M multiply-adds against the shipped gate's
15.2M) trained on the shipped gate's recipe (touch_recipe.py's images), its targets the shipped
gate's own twelve outputs on each image (knowledge distillation, Hinton et al. 2015), or with
--labels the labels as touch_recipe.py trains.

    python benchmarks/touching/distill_gate.py --seed 1 [--threads 2] [--labels]

Checkpoints in cache/NAME/ (the same command resumes); the network is saved as cache/NAME.keras
and cache/NAME/model.tflite, NAME fast12_distilled_sSEED (fast12_labels_sSEED with --labels).
Measure it as the other gates: gate_marks.py cache/NAME.
"""

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent / "not_a_digit")]
from common import CACHE, MODEL  # noqa: E402
from touch_recipe import gate_training_images, train_and_save  # noqa: E402

TEACHER = MODEL.parent / "not_a_digit" / "model.keras"  # the shipped gate


def fast_network(mdr, keras, outputs=12):
    """The default network's seven convolutions (batch norm after each, its dropout), with the
    second and fifth at stride 2 and the third and sixth 3x3 keeping the size: 28 -> 26 -> 12
    -> 12 -> 10 -> 4 -> 4 -> 1."""
    L = keras.layers
    conv_dropout, dense_dropout = mdr.dropout_rates("cnn", None, None)

    def conv(filters, kernel, strides=1, padding="valid"):
        return [L.Conv2D(filters, kernel, strides=strides, padding=padding, activation="relu"),
                L.BatchNormalization(momentum=mdr.RECIPE.bn_momentum)]

    return keras.Sequential([
        keras.Input(mdr.IMAGE_SHAPE),
        *conv(32, 3), *conv(32, 3, 2), *conv(32, 3, padding="same"), L.Dropout(conv_dropout),
        *conv(64, 3), *conv(64, 3, 2), *conv(64, 3, padding="same"), L.Dropout(conv_dropout),
        *conv(128, 4), L.Flatten(), L.Dropout(dense_dropout),
        L.Dense(outputs, activation="softmax", dtype="float32", name="probabilities")],
        name="fast_twelve")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--labels", action="store_true",
                        help="train on the labels, not on the shipped gate's outputs")
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow's threads (0: all cores)")
    args = parser.parse_args()
    import keras
    import tensorflow as tf
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    import mnist_digit_recognition as mdr

    x, y, held_out = gate_training_images(["touching_s1"])
    name = f"fast12_{'labels' if args.labels else 'distilled'}_s{args.seed}"
    loss = "sparse_categorical_crossentropy"
    if not args.labels:
        targets = CACHE / f"distill_targets_{len(x)}.npy"  # the teacher's outputs on these x
        if not targets.exists():
            teacher = keras.saving.load_model(TEACHER)
            np.save(targets, teacher.predict(x, batch_size=500, verbose=0).astype(np.float32))
        y, loss = np.load(targets), "categorical_crossentropy"
    recipe = dataclasses.replace(mdr.RECIPE, seed=args.seed, epochs=args.epochs, augment=False,
                                 validation_split=held_out / len(x))
    keras.utils.set_random_seed(args.seed)
    network = fast_network(mdr, keras)
    network.compile(optimizer=keras.optimizers.Adam(), loss=loss)
    train_and_save(mdr, network, x, y, recipe, name)


if __name__ == "__main__":
    main()
