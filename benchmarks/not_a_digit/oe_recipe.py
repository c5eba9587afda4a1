"""Experiment: the default recipe (the script's network, augmentation, schedule, 15 epochs)
trained with an eleventh class, "not a digit" (outlier exposure), on the 54,000 training digits
(MNIST's arrays, or their marks: as the reader sees them written in a clean rendering) and the
negatives of the training kinds (seed 1, as the reader sees them); the 6,000 validation digits'
arrays steer the rate as in the default. Measured as finetune11.py measures.

    python oe_recipe.py --seed 1 [--digits arrays|marks] [--epochs 15] [--no-augment]
                        [--extra-digits stroke_digits_s1] [--single-mark-negatives] [--threads 0]
                        [--kinds font_letters scribbles digit_overlaps kana_kanji]

Each epoch is checkpointed in cache/NAME/ (the script's own --work-dir machinery; NAME:
oe_recipe_sSEED, oe_recipe_marks_sSEED, with noaug_, eEPOCHS_, the extra digits' names, the
kinds beyond TRAIN_KINDS and single_ before sSEED where those are not the default's): the same
command again resumes a run that was stopped. The network is saved as cache/NAME.keras, the
measurements as results/NAME.json.
"""
import argparse
import dataclasses
import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CACHE, N_TRAIN, mnist  # noqa: E402
from finetune11 import measure  # noqa: E402

TRAIN_KINDS = ["font_letters", "scribbles", "digit_overlaps"]


def eleven_class_network(mdr, keras, outputs=11):
    """The default network with an eleventh output, "not a digit" (and any more asked for)."""
    base = mdr.build_model()
    output = keras.layers.Dense(outputs, activation="softmax", dtype="float32", name="probabilities")
    return keras.Sequential([keras.Input(mdr.IMAGE_SHAPE), *base.layers[:-1], output],
                            name="cnn_eleven")


def training_images(kinds, marks=False, extra_digits=(), single_mark_negatives=False):
    """(x, y): the training digits (arrays, or with marks their marks), the extra digits (cache
    files with marks and labels, such as stroke_digits.py's) and the negatives (label 10; with
    single_mark_negatives, only those of pictures in which the reader finds one mark), then the
    validation digits' arrays last, where the recipe's validation split takes them from."""
    arrays = mnist()
    digits = arrays["x_train"].astype(np.float32) / 255
    training = np.load(CACHE / "digits_train.npz")["marks"][0] if marks else digits[:N_TRAIN]
    extra = [np.load(CACHE / f"{name}.npz") for name in extra_digits]
    negatives = np.concatenate([negative_marks(kind, single_mark_negatives) for kind in kinds])
    x = np.concatenate([training, *(e["marks"] for e in extra), negatives,
                        digits[N_TRAIN:]])[..., np.newaxis]
    y = np.concatenate([arrays["y_train"][:N_TRAIN], *(e["labels"] for e in extra),
                        np.full(len(negatives), 10, np.uint8), arrays["y_train"][N_TRAIN:]])
    return x.astype(np.float32), y


def negative_marks(kind, single_mark):
    """The seed-1 negatives of a kind; with single_mark, without the pieces of pictures the reader
    cuts in several marks: each line of a hatching, the dotless i of an Ы, is a 1."""
    data = np.load(CACHE / f"neg_{kind}_s1.npz")
    if not single_mark:
        return data["marks"]
    owners, counts = np.unique(data["owners"], return_counts=True)
    return data["marks"][np.isin(data["owners"], owners[counts == 1])]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--kinds", nargs="+", default=TRAIN_KINDS)
    parser.add_argument("--digits", choices=["arrays", "marks"], default="arrays",
                        help="the training digits: MNIST's arrays, or as the reader sees them")
    parser.add_argument("--no-augment", action="store_true",
                        help="the recipe without its augmentation")
    parser.add_argument("--extra-digits", nargs="+", default=[], metavar="NAME",
                        help="more training digits: cache/NAME.npz (marks, labels), such as "
                             "stroke_digits_s1 (stroke_digits.py build --seed 1)")
    parser.add_argument("--single-mark-negatives", action="store_true",
                        help="leave out the negatives of pictures the reader cuts in several marks")
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow's threads (0: all cores)")
    args = parser.parse_args()
    import keras
    import tensorflow as tf
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    import mnist_digit_recognition as mdr

    name = "".join(["oe_recipe_", "marks_" if args.digits == "marks" else "",
                    "noaug_" if args.no_augment else "",
                    f"e{args.epochs}_" if args.epochs != 15 else "",
                    *(f"{name}_" for name in args.extra_digits),
                    *(f"{kind}_" for kind in args.kinds if kind not in TRAIN_KINDS),
                    "single_" if args.single_mark_negatives else "", f"s{args.seed}"])
    x, y = training_images(args.kinds, marks=args.digits == "marks", extra_digits=args.extra_digits,
                           single_mark_negatives=args.single_mark_negatives)
    recipe = dataclasses.replace(mdr.RECIPE, seed=args.seed, epochs=args.epochs,
                                 augment=not args.no_augment,
                                 validation_split=(60_000 - N_TRAIN) / len(x))
    keras.utils.set_random_seed(args.seed)
    network = mdr.compile_model(eleven_class_network(mdr, keras), recipe)
    (CACHE / name).mkdir(exist_ok=True)
    started = time.time()
    history = mdr.train(network, x, y, recipe, work_dir=CACHE / name, verbose=2)
    print(f"trained in {time.time() - started:.0f} s", flush=True)
    network.save(CACHE / f"{name}.keras")
    measure(network, name, {**vars(args), "images": len(x), "history": history})


if __name__ == "__main__":
    main()
