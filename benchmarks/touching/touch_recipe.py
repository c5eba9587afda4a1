"""The shipped "not a digit" network's recipe (benchmarks/not_a_digit/oe_recipe.py: the training
digits' marks, the stroke and typed digits, the eight kinds' single-mark negatives, 8 epochs
without augmentation) with a twelfth output, "digits that touch": build_touching.py's marks
(cache/touching_s1.npz, or those --touching names), label 11.

    python benchmarks/touching/touch_recipe.py --seed 1 [--threads 2] [--touching touching_s1 touching_s2]

Checkpoints in cache/touch12_sSEED/ (the same command resumes); the network is saved as
cache/touch12_sSEED.keras and as a LiteRT file, cache/touch12_sSEED/model.tflite. `--width W`
scales every convolution's filters by W (W=0.5: a quarter of the arithmetic), named
touch12wW_sSEED; `--share N` puts the shipped digit network's first N layers, frozen, in place of
the network's own (6: its first three convolutions), named touch12shareN_sSEED; with other
--touching sets, touch12_t1_2_sSEED (their seeds).
"""

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent / "not_a_digit")]
from common import CACHE, N_TRAIN, export_litert  # noqa: E402
from oe_recipe import eleven_class_network, training_images  # noqa: E402

KINDS = ["font_letters", "scribbles", "digit_overlaps", "kana_kanji", "hershey_symbols",
         "world_scripts", "world_strokes", "pictograms"]  # the shipped gate's
EXTRA_DIGITS = ["stroke_digits_s1", "font_digits_s1"]
TOUCHING = 11


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--width", type=float, default=1.0,
                        help="the convolutions' filters, as a share of the default network's")
    parser.add_argument("--touching", nargs="+", default=["touching_s1"],
                        help="build_touching.py's sets in cache/ to train the twelfth output on")
    parser.add_argument("--share", type=int, default=0,
                        help="the shipped classifier's first SHARE layers (6: its first three "
                             "convolutions and their batch norms), frozen, in place of the gate's")
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow's threads (0: all cores)")
    args = parser.parse_args()
    if args.width <= 0:
        parser.error(f"--width must be above 0, not {args.width}")
    import keras
    import tensorflow as tf
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    import mnist_digit_recognition as mdr

    x, y, held_out = gate_training_images(args.touching)
    recipe = dataclasses.replace(mdr.RECIPE, seed=args.seed, epochs=args.epochs, augment=False,
                                 validation_split=held_out / len(x))
    keras.utils.set_random_seed(args.seed)
    network = eleven_class_network(mdr, keras, outputs=12)
    if args.width != 1:
        network = narrower(network, args.width, keras)
    if args.share:
        network = sharing_trunk(network, args.share, mdr, keras)
    network = mdr.compile_model(network, recipe)
    sets = "" if args.touching == ["touching_s1"] else "_t" + "_".join(
        name.removeprefix("touching_s") for name in args.touching)
    shared = f"share{args.share}" if args.share else ""
    name = f"touch12{'' if args.width == 1 else f'w{args.width:g}'}{shared}{sets}_s{args.seed}"
    train_and_save(mdr, network, x, y, recipe, name)


def gate_training_images(touching_sets):
    """(x, y, held_out): the shipped gate's training images (training_images: the training
    digits' marks, the extra digits, the kinds' single-mark negatives), build_touching.py's marks
    of cache/SET.npz for each of touching_sets as label 11, then the held_out validation digits,
    last, where the recipe takes them from."""
    x, y = training_images(KINDS, marks=True, extra_digits=EXTRA_DIGITS, single_mark_negatives=True)
    held_out = 60_000 - N_TRAIN
    touching = np.concatenate([np.load(CACHE / f"{name}.npz")["marks"] for name in touching_sets])
    touching = touching[..., np.newaxis]
    x = np.concatenate([x[:-held_out], touching, x[-held_out:]])
    y = np.concatenate([y[:-held_out], np.full(len(touching), TOUCHING, y.dtype), y[-held_out:]])
    return x, y, held_out


def train_and_save(mdr, network, x, y, recipe, name):
    """mdr.train with checkpoints in cache/NAME/ (the same command resumes), then the network
    as cache/NAME.keras and cache/NAME/model.tflite."""
    (CACHE / name).mkdir(exist_ok=True)
    started = time.time()
    mdr.train(network, x, y, recipe, work_dir=CACHE / name, verbose=2)
    print(f"trained in {time.time() - started:.0f} s on {len(x)} images", flush=True)
    network.save(CACHE / f"{name}.keras")
    export_litert(network, CACHE / name / "model.tflite")


def sharing_trunk(network, count, mdr, keras):
    """The network with its first `count` layers the shipped classifier's, frozen (a frozen
    BatchNormalization runs in inference mode): run beside the classifier, the gate would need
    only its own layers' arithmetic."""
    classifier = mdr.load_model(str(HERE.parent.parent / "mnist_digit_recognition_model"))
    trunk = classifier.layers[:count]
    for layer in trunk:
        layer.trainable = False
    return keras.Sequential([keras.Input(mdr.IMAGE_SHAPE), *trunk, *network.layers[count:]],
                            name=network.name)


def narrower(network, width, keras):
    """The same network with each convolution's filters scaled by `width`, freshly initialised."""
    config = network.get_config()
    for layer in config["layers"]:
        layer.pop("build_config", None)  # the old shapes: each layer is built anew
        if layer["class_name"] == "Conv2D":
            layer["config"]["filters"] = max(1, round(layer["config"]["filters"] * width))
    return keras.Sequential.from_config(config)


if __name__ == "__main__":
    main()
