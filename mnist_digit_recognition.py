"""Train, evaluate, save, use and serve a handwritten-digit recogniser on MNIST.

    python mnist_digit_recognition.py --epochs 15 --batch-size 32     # train (the default action)
    python mnist_digit_recognition.py evaluate                        # score the saved model
    python mnist_digit_recognition.py predict my_digit.png            # classify image files
    python mnist_digit_recognition.py serve                           # draw digits in a browser

Training loads MNIST, holds out part of the training images for validation, builds a
convolutional network, trains it on randomly rotated, zoomed and shifted images (the
augmentation of Keras' ImageDataGenerator, done in the tf.data graph), lowers the learning rate
when the validation loss stops improving and over the last third of the epochs, evaluates once
on the test set and saves the model directory (model.keras, saved_model/, model.tflite,
metadata.json and pictures). The file reads top to bottom: the recipe, data, model,
augmentation, training, evaluation, saving, command line. What it leans on is in the package
beside it, mnist_digits/ (its __init__.py lists the modules). Importing it only defines things:

    import mnist_digit_recognition as mdr
    (x_train, y_train), (x_test, y_test) = mdr.load_mnist("path/to/mnist.npz")
    model = mdr.load_model("mnist_digit_recognition_model")
    digits, probabilities = mdr.predict(model, x_test[:5])
"""

import argparse
import dataclasses
import difflib
import json
import math
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from mnist_digits import cli, figures, hardware, interruption, lazy, mnist_files, model_files
from mnist_digits.classifier import EVAL_BATCH_SIZE, predict  # predict: part of the API
from mnist_digits.cli import count
from mnist_digits.errors import Interrupted, TrainingDiverged, UsageError, UserError
from mnist_digits.lazy import keras, tf
from mnist_digits.mnist_files import IMAGE_SHAPE, NUM_CLASSES
from mnist_digits.model_files import DEFAULT_MODEL_DIR, load_model


# ---------------------------------------------------------------------------------------------
# The recipe: every training default, in one place. The flags, --help, metadata.json and
# --resume read it; `train()` takes it.
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Recipe:
    # the network
    arch: str = "cnn"                   # cnn, classic-cnn, deep-cnn or mlp (see build_model)
    batchnorm: bool = True              # BatchNormalization after each convolution
    conv_dropout: float | None = None   # after each convolutional block; None: ARCH_DROPOUT's
    dense_dropout: float | None = None  # before the output layer; None: ARCH_DROPOUT's
    dropout_from_epoch: int | None = None  # no dropout before this epoch (from 1); None: the
                                           # network's own (DROPOUT_FROM_EPOCH)
    bn_momentum: float = 0.9            # Keras' 0.99 lags for hundreds of steps: short runs
                                        # would score near chance
    # the optimisation
    epochs: int = 15
    batch_size: int = 32                # global: under tf.distribute the replicas split it
    optimizer: str = "adam"             # adam, rmsprop or sgd
    learning_rate: float | None = None  # None: Keras' default (0.001; sgd 0.01)
    validation_split: float = 0.1       # held out of the training images to steer the rate
    plateau_patience: int = 1           # epochs without a lower validation loss, then...
    lr_factor: float = 0.5              # ...the rate is multiplied by this (ReduceLROnPlateau)
    final_halvings: float = 1 / 3       # and at the start of each of this last part of the
                                        # epochs: every run ends at a small rate
    min_learning_rate: float = 1e-5
    # the augmentation (ImageDataGenerator's meaning)
    augment: bool = True
    rotation_range: float = 10.0        # degrees, either way
    zoom_range: float = 0.1             # a zoom in [1 - z, 1 + z], height and width apart
    shift_range: float = 0.1            # a fraction of the width and of the height
    augmentation_engine: str = "layers"  # layers: in the tf.data graph; imagedatagenerator:
                                         # Keras' literal ImageDataGenerator (slower)
    seed: int | None = None             # weights, shuffling, augmentation; same seed, same run

    def resolved(self):
        """The values a run uses: each None of the dropout replaced by the network's own
        (ARCH_DROPOUT, DROPOUT_FROM_EPOCH)."""
        conv, dense = ARCH_DROPOUT[self.arch]
        return dataclasses.replace(
            self, conv_dropout=conv if self.conv_dropout is None else self.conv_dropout,
            dense_dropout=dense if self.dense_dropout is None else self.dense_dropout,
            dropout_from_epoch=self.dropout_from_epoch or DROPOUT_FROM_EPOCH.get(self.arch, 1))


RECIPE = Recipe()
ARCHITECTURES = ("cnn", "classic-cnn", "deep-cnn", "mlp")
# Each network's own dropout (after each convolutional block, before the output layer): the
# cnn's from the study in benchmarks/default_network.py, the others' as published.
ARCH_DROPOUT = {"cnn": (0.4, 0.4), "classic-cnn": (0.25, 0.5), "deep-cnn": (0.25, 0.5),
                "mlp": (0.0, 0.0)}
# The cnn trains its first epoch without dropout: dropout slows the start most and helps most
# at the end (one epoch on 5,000 images: about 93% with dropout, 95.5-96% without). The
# published recipes' networks drop out from the first step.
DROPOUT_FROM_EPOCH = {"cnn": 2}
OPTIMIZERS = ("adam", "rmsprop", "sgd")
AUGMENTATION_ENGINES = ("layers", "imagedatagenerator")


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def load_mnist(path=None, arrays=None):
    """Return ((x_train, y_train), (x_test, y_test)) as Keras does, normalised for the network.

    Images are float32 (N, 28, 28, 1) in [0, 1], labels uint8. `path`: see read_mnist_arrays;
    or pass arrays already read.
    """
    arrays = mnist_files.read_mnist_arrays(path) if arrays is None else arrays
    return ((mnist_files.normalize_images(arrays["x_train"]), arrays["y_train"]),
            (mnist_files.normalize_images(arrays["x_test"]), arrays["y_test"]))


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


def build_model(arch=RECIPE.arch, batchnorm=True, conv_dropout=None, dense_dropout=None,
                dtype=None, bn_momentum=RECIPE.bn_momentum, fused_batchnorm=False):
    """Build (uncompiled) one of the networks; `dtype` is a Keras dtype policy name.

    Dropout None is the network's own (ARCH_DROPOUT). The output layer always computes in
    float32, so probabilities stay exact under mixed precision. `fused_batchnorm` trains faster
    (hardware.fused_batchnorm_layer); a model to save or share uses Keras' own layer.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {ARCHITECTURES}, not {arch!r}")
    conv_dropout = ARCH_DROPOUT[arch][0] if conv_dropout is None else conv_dropout
    dense_dropout = ARCH_DROPOUT[arch][1] if dense_dropout is None else dense_dropout
    L = keras.layers
    normalization = hardware.fused_batchnorm_layer() if fused_batchnorm else L.BatchNormalization

    def batch_norm():
        return [normalization(momentum=bn_momentum, dtype=dtype)] if batchnorm else []

    def conv(filters, kernel, strides=1, padding="valid", activation="relu"):
        return [L.Conv2D(filters, kernel, strides=strides, padding=padding,
                         activation=activation, dtype=dtype)]

    def dropout(rate):
        return [L.Dropout(rate, dtype=dtype)]

    if arch == "cnn":  # C. Deotte's seven convolutions, batch norm after each (benchmarks/)
        hidden = [*conv(32, 3), *batch_norm(), *conv(32, 3), *batch_norm(),
                  *conv(32, 5, 2, "same"), *batch_norm(), *dropout(conv_dropout),
                  *conv(64, 3), *batch_norm(), *conv(64, 3), *batch_norm(),
                  *conv(64, 5, 2, "same"), *batch_norm(), *dropout(conv_dropout),
                  *conv(128, 4), *batch_norm(), L.Flatten(dtype=dtype), *dropout(dense_dropout)]
    elif arch == "classic-cnn":  # the network of the published 99.40% recipe
        relu = L.ReLU(dtype=dtype)
        hidden = [*conv(32, 3, activation=None), *batch_norm(), relu,
                  *conv(64, 3, activation=None), *batch_norm(), L.ReLU(dtype=dtype),
                  L.MaxPooling2D(2, dtype=dtype), *dropout(conv_dropout), L.Flatten(dtype=dtype),
                  L.Dense(128, dtype=dtype), *batch_norm(), L.ReLU(dtype=dtype),
                  *dropout(dense_dropout)]
    elif arch == "deep-cnn":  # the 730,602-parameter network of the published RMSprop recipe
        hidden = [*conv(32, 3), *conv(32, 3), L.MaxPooling2D(2, dtype=dtype),
                  *dropout(conv_dropout), *conv(64, 3, padding="same"),
                  *conv(64, 3, padding="same"), L.MaxPooling2D(2, dtype=dtype),
                  *dropout(conv_dropout), *conv(128, 3, padding="same"), *dropout(conv_dropout),
                  L.Flatten(dtype=dtype), L.Dense(128, activation="relu", dtype=dtype),
                  *batch_norm(), *dropout(dense_dropout)]
    else:  # mlp: the dense baseline, no batch norm or dropout
        hidden = [L.Flatten(dtype=dtype), L.Dense(512, activation="relu", dtype=dtype)]
    output = L.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name="probabilities")
    return keras.Sequential([keras.Input(IMAGE_SHAPE), *hidden, output],
                            name=arch.replace("-", "_"))


def build_model_for(recipe, dtype=None, fused_batchnorm=False):
    return build_model(recipe.arch, recipe.batchnorm, recipe.conv_dropout, recipe.dense_dropout,
                       dtype, recipe.bn_momentum, fused_batchnorm)


def compile_model(model, recipe=RECIPE):
    """Sparse categorical cross-entropy and accuracy, with the recipe's optimizer and rate."""
    options = {} if recipe.learning_rate is None else {"learning_rate": recipe.learning_rate}
    optimizer = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop,
                 "sgd": keras.optimizers.SGD}[recipe.optimizer](**options)
    # float16 gradients underflow without loss scaling. Keras adds it by itself only under a
    # global dtype policy; our layers carry their policy each.
    if any(layer.dtype_policy.name == "mixed_float16" for layer in model.layers):
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


# ---------------------------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------------------------

def make_augmenter(recipe=RECIPE, seed=None):
    """ImageDataGenerator's random rotation, zoom and shift as one function on a batch.

    Keras' RandomRotation, RandomZoom and RandomTranslation layers would resample each image
    three times, blurring it a little each time (measured: test loss 0.030 against 0.023 after
    6 epochs); this composes the three into one affine transform and resamples once, as
    ImageDataGenerator does, at half the cost. The nearest edge pixel fills the corners.
    """
    seeds = keras.random.SeedGenerator(seed)
    rotation, zoom, shift = recipe.rotation_range, recipe.zoom_range, recipe.shift_range

    def augment(images):
        batch, height, width = keras.ops.shape(images)[0], images.shape[1], images.shape[2]

        def uniform(limit, centre=0.0):
            return keras.random.uniform((batch,), centre - limit, centre + limit, seed=seeds)

        angle = uniform(rotation) * (math.pi / 180)
        zoom_x, zoom_y = uniform(zoom, 1.0), uniform(zoom, 1.0)
        shift_x, shift_y = uniform(shift) * width, uniform(shift) * height
        # Each output pixel samples the input at centre + rotation @ zoom @ (out - centre) + shift.
        cos, sin = keras.ops.cos(angle), keras.ops.sin(angle)
        a0, a1, b0, b1 = cos * zoom_x, -sin * zoom_y, sin * zoom_x, cos * zoom_y
        centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
        a2 = centre_x - a0 * centre_x - a1 * centre_y + shift_x
        b2 = centre_y - b0 * centre_x - b1 * centre_y + shift_y
        zeros = keras.ops.zeros_like(a0)
        transforms = keras.ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        return keras.ops.image.affine_transform(images, transforms, interpolation="bilinear",
                                                fill_mode="nearest")
    return augment


def make_image_data_generator(recipe=RECIPE):
    """Keras' literal ImageDataGenerator with the recipe's ranges (a Python loop over images)."""
    from tensorflow.keras.preprocessing.image import ImageDataGenerator

    return ImageDataGenerator(rotation_range=recipe.rotation_range, zoom_range=recipe.zoom_range,
                              width_shift_range=recipe.shift_range,
                              height_shift_range=recipe.shift_range, fill_mode="nearest")


def make_train_dataset(x, y, batch_size, augmenter=None, seed=None):
    """Shuffled batches, augmented in the tf.data graph in parallel with training."""
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    if augmenter is not None:
        dataset = dataset.map(lambda images, labels: (augmenter(images), labels),
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=seed is not None)
    return hardware.shard_by_data(dataset.prefetch(tf.data.AUTOTUNE))


def make_eval_dataset(x, y):
    return hardware.shard_by_data(tf.data.Dataset.from_tensor_slices((x, y)).batch(EVAL_BATCH_SIZE))


def augmented_examples(x, recipe=RECIPE, versions=7, seed=0):
    """Each of the images x (N, 28, 28, 1) followed by `versions` augmented copies of it, as
    the recipe's engine makes them for training: (N, 1 + versions, 28, 28)."""
    repeated = np.repeat(x, versions, axis=0)
    if recipe.augmentation_engine == "imagedatagenerator":
        flow = make_image_data_generator(recipe).flow(repeated, batch_size=len(repeated),
                                                      shuffle=False, seed=seed)
        augmented = next(flow)
    else:
        augmented = np.asarray(make_augmenter(recipe, seed)(tf.constant(repeated)))
    augmented = augmented.reshape(len(x), versions, 28, 28)
    return np.concatenate([x.reshape(len(x), 1, 28, 28), augmented], axis=1)


# ---------------------------------------------------------------------------------------------
# Devices, precision and distribution
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


# A training loss above this has diverged (chance level is ln 10 = 2.3). Not only NaN, as Keras'
# TerminateOnNaN checks: the cross-entropy of a softmax, computed from its logits, has no ceiling
# and can stay finite at 1e31.
DIVERGED_LOSS = 1e4


def validation_size(n_images, validation_split):
    """How many of n_images the validation split holds out (at least one when asked for)."""
    if validation_split == 0:
        return 0
    n_val = max(1, round(n_images * validation_split))
    if n_val >= n_images:
        raise UsageError(f"{count(n_images, 'training image')} are too few for --validation-split "
                         f"{validation_split}: use more images or a smaller split")
    return n_val


def split_validation(x, y, validation_split):
    """Hold out the last `validation_split` of the training images, as Keras' fit does."""
    n_val = validation_size(len(x), validation_split)
    if n_val == 0:
        return (x, y), None
    return (x[:-n_val], y[:-n_val]), (x[-n_val:], y[-n_val:])


def learning_rate_schedule(recipe):
    """The fixed part of the schedule: `lr_factor` at the start of each of the last
    `final_halvings` of the epochs; never below min_learning_rate (nor raising a rate set below
    it). ReduceLROnPlateau's cuts follow the noise of the validation loss and
    may come late or never (in three runs of the old default, after epoch 5, 7 and 8, and the
    later the worse: 99.49%, 99.38%, 99.32%); this makes every run end at a small rate."""
    first_halving = recipe.epochs - round(recipe.epochs * recipe.final_halvings)

    def schedule(epoch, rate):
        factor = recipe.lr_factor if epoch >= first_halving else 1.0
        return max(rate * factor, min(rate, recipe.min_learning_rate))
    return schedule


def dropout_from_epoch(model, first):
    """A callback that keeps every Dropout layer at rate 0 before epoch `first` (counted from 1)
    and at its own rate from then on, and a function that leaves the layers as built. Keras
    reads a layer's rate when it traces the training step: a change of rate traces it again."""
    rates = {layer: layer.rate for layer in model.layers
             if isinstance(layer, keras.layers.Dropout)}

    def set_rates(on):
        changed = any(layer.rate != (rate if on else 0.0) for layer, rate in rates.items())
        for layer, rate in rates.items():
            layer.rate = rate if on else 0.0
        return changed

    def on_epoch_begin(epoch, logs):
        if set_rates(on=epoch + 1 >= first):
            model.make_train_function(force=True)
    return keras.callbacks.LambdaCallback(on_epoch_begin=on_epoch_begin), lambda: set_rates(True)


def epoch_logger(rows, path=None):
    """A callback that appends each epoch's metrics and duration to `rows` and, given a path,
    keeps them there as JSON so that a resumed run reports the epochs before the interruption."""
    started = []

    def on_epoch_end(epoch, logs):
        del rows[epoch:]  # an epoch redone after an interruption replaces its first record
        rows.append({"epoch": epoch + 1, **{key: float(value) for key, value in logs.items()},
                     "epoch_seconds": round(time.perf_counter() - started[-1], 3)})
        if path:
            model_files.write_atomically(path, json.dumps(rows, indent=1))
    return keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: started.append(time.perf_counter()),
        on_epoch_end=on_epoch_end)


def train(model, x_train, y_train, recipe=RECIPE, *, work_dir=None, callbacks=(), verbose=None):
    """Fit a compiled model to the data as the recipe says; return the history, a dict per epoch.

    The validation split drives ReduceLROnPlateau, on top of learning_rate_schedule. With a
    `work_dir`, a checkpoint after every epoch (Keras' BackupAndRestore) and the history so far
    are kept there, and calling train again with it resumes an interrupted run. Ctrl-C and
    SIGTERM raise KeyboardInterrupt at the end of the step under way.
    """
    (x_fit, y_fit), validation = split_validation(x_train, y_train, recipe.validation_split)
    if verbose is None:  # a live progress bar on a terminal, a line per epoch in a log file
        verbose = 1 if sys.stdout.isatty() else 2
    if recipe.augment and recipe.augmentation_engine == "imagedatagenerator":
        train_data = make_image_data_generator(recipe).flow(
            x_fit, y_fit, batch_size=recipe.batch_size, shuffle=True, seed=recipe.seed)
    else:
        augmenter = make_augmenter(recipe, recipe.seed) if recipe.augment else None
        train_data = make_train_dataset(x_fit, y_fit, recipe.batch_size, augmenter, recipe.seed)
    def stop_if_diverged(batch, logs):
        if not logs.get("loss", 0.0) < DIVERGED_LOSS:  # NaN is not below it either
            model.stop_training = True

    history_file = Path(work_dir) / "history.json" if work_dir else None
    history = json.loads(history_file.read_text()) if history_file and history_file.exists() \
        else []
    late_dropout, restore_dropout = dropout_from_epoch(model, recipe.resolved().dropout_from_epoch)
    standard_callbacks = [
        late_dropout,
        keras.callbacks.LearningRateScheduler(learning_rate_schedule(recipe)),
        # After the scheduler: it logs the rate each epoch ran at, before it cuts it.
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss" if validation else "loss",
                                          factor=recipe.lr_factor,
                                          patience=recipe.plateau_patience,
                                          min_lr=recipe.min_learning_rate),
        keras.callbacks.LambdaCallback(on_train_batch_end=stop_if_diverged),
        epoch_logger(history, history_file),
    ]
    if work_dir:  # two alternating checkpoints: a signal during a save spoils neither
        # Kept after the last epoch too (until the model is saved): --resume then only saves.
        standard_callbacks.append(keras.callbacks.BackupAndRestore(
            str(Path(work_dir) / "backup"), double_checkpoint=True, delete_checkpoint=False))
    try:
        with interruption.stop_between_steps() as stopper:
            model.fit(train_data, epochs=recipe.epochs, shuffle=False, verbose=verbose,
                      validation_data=make_eval_dataset(*validation) if validation else None,
                      callbacks=[stopper] + standard_callbacks + list(callbacks))
    finally:
        restore_dropout()
    diverged = [row["epoch"] for row in history if not row.get("loss", 0.0) < DIVERGED_LOSS]
    if diverged:
        raise TrainingDiverged(f"training diverged (the loss exploded in epoch {diverged[0]}): "
                               "try a smaller --learning-rate")
    return history


# ---------------------------------------------------------------------------------------------
# Evaluation and the pictures a person reads
# ---------------------------------------------------------------------------------------------

def evaluate(model, x_test, y_test):
    """Test loss, accuracy, per-digit accuracy and confusion matrix of a model, and its
    predicted probabilities (N, 10)."""
    probabilities = model.predict(x_test, batch_size=EVAL_BATCH_SIZE, verbose=0)
    predicted = probabilities.argmax(axis=1)
    loss = keras.losses.sparse_categorical_crossentropy(y_test, probabilities)
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    np.add.at(confusion, (y_test, predicted), 1)
    per_digit = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
    return {
        "test_loss": float(np.mean(loss)),
        "test_accuracy": float(np.mean(predicted == y_test)),
        "per_digit_accuracy": {str(d): float(a) for d, a in enumerate(per_digit)},
        "confusion_matrix": confusion.tolist(),
    }, probabilities


# ---------------------------------------------------------------------------------------------
# Saving and loading
# ---------------------------------------------------------------------------------------------


def saveable_copy(model, recipe):
    """The trained model as it is saved: Keras' own layers, float32 (fast on any machine),
    outside any tf.distribute strategy (whose predict would need every worker), with the same
    weights and optimizer state (without float16's loss scaling)."""
    copy = build_model_for(recipe, dtype="float32")
    copy.set_weights(model.get_weights())
    optimizer = model.optimizer
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    copy.compile(optimizer=optimizer.from_config(optimizer.get_config()), loss=model.loss,
                 metrics=["accuracy"])
    copy.optimizer.build(copy.trainable_variables)
    for target, source in zip(copy.optimizer.variables, optimizer.variables):
        target.assign(source)
    return copy


# ---------------------------------------------------------------------------------------------
# Prediction on arrays and on people's pictures (read by pictures.py)
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def build_train_parser(prog):
    r = RECIPE
    own = {arch: rates for arch, rates in ARCH_DROPOUT.items() if arch != "mlp"}
    parser = cli.ArgumentParser(
        prog=prog, description="Train a digit recogniser on MNIST, evaluate it on the test set "
        "and save it. Other actions, each with its own --help: 'evaluate' scores a saved model, "
        "'predict FILE...' classifies image files, 'serve' opens a page to draw digits on. "
        "The action comes first: mnist_digit_recognition.py predict --json d.png")
    model = parser.add_argument_group("model")
    model.add_argument("--arch", choices=ARCHITECTURES, default=r.arch,
                       help=f"the network (default: {r.arch}; README describes each)")
    model.add_argument("--no-batchnorm", dest="batchnorm", action="store_false",
                       help="leave out every BatchNormalization layer (default: keep them)")
    model.add_argument("--compare-batchnorm", action="store_true",
                       help="train with and without batch norm (same seed and data), keep both "
                            "(the second in MODEL_DIR-no-batchnorm) and print them side by side")
    for which, index, where in (("conv", 0, "after each convolutional block"),
                                ("dense", 1, "before the output layer")):
        rates = ", ".join(f"{arch} {rates[index]:g}" + (
            f" from epoch {DROPOUT_FROM_EPOCH[arch]}" if arch in DROPOUT_FROM_EPOCH else "")
            for arch, rates in own.items())
        model.add_argument(f"--{which}-dropout", type=cli.number_in(0, 1), default=None,
                           metavar="R", help=f"dropout {where}; 0 disables (default: the "
                                             f"network's own: {rates})")
    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=cli.positive_int, default=r.epochs,
                          help=f"passes over the training images (default: {r.epochs})")
    training.add_argument("--batch-size", type=cli.positive_int, default=r.batch_size,
                          help=f"images per step (default: {r.batch_size}); under --distribute "
                               "the replicas and workers split each batch")
    training.add_argument("--optimizer", choices=OPTIMIZERS, default=r.optimizer,
                          help=f"the optimizer, at its Keras defaults (default: {r.optimizer})")
    training.add_argument("--learning-rate", type=cli.number_in(0, math.inf, low_included=False),
                          metavar="X", help="initial learning rate (default: Keras' default "
                                            "for the optimizer: 0.001, sgd 0.01)")
    training.add_argument("--validation-split", type=cli.number_in(0, 1), metavar="F",
                          default=r.validation_split,
                          help="fraction of the training images held out to drive the "
                               f"learning-rate schedule (default: {r.validation_split}); the "
                               "test set is used only for the final evaluation; 0 trains on all")
    training.add_argument("--seed", type=cli.whole_number(0, 2**32 - 1), default=r.seed,
                          help="seed for weights, shuffling and augmentation; on a CPU the same "
                               "seed gives the same metrics (default: none, a new run each time)")
    training.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction,
                          help="compute in bfloat16/float16 with float32 weights (default: only "
                               "where the hardware is fast at it)")
    training.add_argument("--distribute", choices=hardware.DISTRIBUTE_MODES, default="auto",
                          help="auto (the default): MirroredStrategy on more than one GPU, and "
                               "MultiWorkerMirroredStrategy when TF_CONFIG describes a cluster; "
                               "mirrored: MirroredStrategy over every GPU (or the CPU's logical "
                               "devices); none: one device")
    training.add_argument("--tensorboard", metavar="DIR",
                          help="log training curves for TensorBoard into DIR")
    training.add_argument("--resume", action="store_true",
                          help="continue an interrupted run (same command) from its last "
                               "finished epoch")
    augmentation = parser.add_argument_group("augmentation (ImageDataGenerator's meaning)")
    augmentation.add_argument("--no-augmentation", dest="augment", action="store_false",
                              help="train on the images as they are (default: augment)")
    augmentation.add_argument("--rotation-range", type=cli.number_in(0, 180, high_included=True),
                              default=r.rotation_range, metavar="DEG",
                              help=f"random rotation, degrees (default: {r.rotation_range:g})")
    augmentation.add_argument("--zoom-range", type=cli.number_in(0, 1), default=r.zoom_range,
                              metavar="F", help=f"random zoom in [1-F, 1+F] (default: "
                                                f"{r.zoom_range:g})")
    augmentation.add_argument("--shift-range", type=cli.number_in(0, 1), default=r.shift_range,
                              metavar="F", help="random shift, fraction of width and height "
                                                f"(default: {r.shift_range:g})")
    augmentation.add_argument("--augmentation-engine", choices=AUGMENTATION_ENGINES,
                              default=r.augmentation_engine,
                              help="layers (the default): one transform in the tf.data graph; "
                                   "imagedatagenerator: Keras' literal ImageDataGenerator")
    cli.add_data_flag(parser)
    parser.add_argument("--model-dir", default=DEFAULT_MODEL_DIR,
                        type=lambda text: str(Path(text)),  # out/ and out: one folder
                        help=f"where to save the model (default: {DEFAULT_MODEL_DIR})")
    parser.add_argument("--train-size", type=cli.positive_int, metavar="N",
                        help="use only the first N training images, for quick trials "
                             "(default: all 60,000)")
    return parser


def recipe_from(args):
    return Recipe(**{field.name: getattr(args, field.name) for field in dataclasses.fields(Recipe)
                     if hasattr(args, field.name)})


def training_settings(args):
    """What defines a training run: metadata records it, --resume must match it."""
    return {**dataclasses.asdict(recipe_from(args)), "mixed_precision": args.mixed_precision,
            "distribute": args.distribute, "data": str(args.data) if args.data else None,
            "train_size": args.train_size, "model_dir": str(args.model_dir)}


@dataclasses.dataclass
class Run:
    """A training run as prepare_training sets it up, for fit, finish and evaluate_and_save."""
    args: argparse.Namespace  # the flags
    recipe: Recipe            # resolved: the dropout the network uses
    strategy: object          # the tf.distribute strategy
    chief: bool               # whether this process writes the model directory
    arrays: dict              # the raw MNIST arrays, for their checksum
    x_train: np.ndarray       # the training images (with the validation split still in them)
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_val: int                # how many of x_train the validation split holds out
    work_dir: Path            # checkpoints and history until the model is saved (--resume)
    policy: str               # the Keras dtype policy
    model: object             # compiled, under the strategy
    started: float            # time.perf_counter() at the start


def prepare_training(args, strategy):
    """Everything before the first step, each mistake found before any training: the data,
    the model directory, the work folder, the seeds and the compiled model."""
    started, recipe, chief = time.perf_counter(), recipe_from(args).resolved(), hardware.is_chief(strategy)
    model_files.check_model_dir(args.model_dir)
    arrays = mnist_files.read_mnist_arrays(args.data)
    (x_train, y_train), (x_test, y_test) = load_mnist(arrays=arrays)
    if args.train_size:
        if args.train_size > len(x_train):
            raise UsageError(f"--train-size {args.train_size:,} is more than the "
                             f"{len(x_train):,} training images")
        x_train, y_train = x_train[:args.train_size], y_train[:args.train_size]
    n_val = validation_size(len(x_train), recipe.validation_split)
    if recipe.batch_size > len(x_train) - n_val:
        raise UsageError(f"--batch-size {recipe.batch_size:,} is more than the "
                         f"{count(len(x_train) - n_val, 'image')} to train on: one step per epoch "
                         "would learn next to nothing; use a smaller --batch-size")
    work_dir = interruption.prepare_work_dir(
        args.model_dir, training_settings(args), args.resume,
        None if chief else hardware.worker_name(strategy))
    if args.seed is not None:
        keras.utils.set_random_seed(args.seed)
        tf.config.experimental.enable_op_determinism()
    policy = hardware.choose_precision(args.mixed_precision)
    with strategy.scope():
        model = compile_model(build_model_for(recipe, policy, fused_batchnorm=True), recipe)
    print(f"Training {recipe.arch} ({model.count_params():,} parameters) on "
          f"{len(x_train) - n_val:,} images, validating on {n_val:,}; "
          f"{hardware.describe_device()}, {policy}, {hardware.describe_distribution(strategy)}", flush=True)
    return Run(args, recipe, strategy, chief, arrays, x_train, y_train, x_test, y_test, n_val,
               work_dir, policy, model, started)


def fit(run, callbacks=()):
    """Train; an interruption or divergence ends in one line saying what became of the work."""
    callbacks = [*callbacks, *([keras.callbacks.TensorBoard(log_dir=run.args.tensorboard)]
                               if run.args.tensorboard and run.chief else [])]
    try:
        return train(run.model, run.x_train, run.y_train, run.recipe, work_dir=run.work_dir,
                     callbacks=callbacks)
    except KeyboardInterrupt:
        done = len(json.loads((run.work_dir / "history.json").read_text())) \
            if (run.work_dir / "history.json").exists() else 0
        if not done:
            shutil.rmtree(run.work_dir, ignore_errors=True)
            raise Interrupted(f"interrupted in the first epoch: {left_as_it_was(run)}, and "
                              "there is nothing to resume") from None
        raise Interrupted(f"interrupted after {count(done, 'finished epoch')}: "
                          f"{left_as_it_was(run)}; run the same command with --resume to "
                          "continue") from None
    except TrainingDiverged as error:
        shutil.rmtree(run.work_dir, ignore_errors=True)
        kept = "the saved model was not changed" if model_files.is_model_dir(run.args.model_dir) \
            else "nothing was saved"
        raise TrainingDiverged(f"{error}; {kept}") from None


def left_as_it_was(run):
    """What a run that stops before its save leaves, in words."""
    model_dir = run.args.model_dir
    return f"{model_dir} is as it was" if model_files.is_model_dir(model_dir) else \
        f"nothing was saved to {model_dir}"


def finish(run, history):
    """Evaluate once on the test set, save the model directory, print the summary. Until the
    model is saved the work folder keeps the trained weights: --resume then only saves."""
    if not run.chief:  # the chief evaluates and writes the model directory
        shutil.rmtree(run.work_dir, ignore_errors=True)
        print(f"{hardware.worker_name(run.strategy)}: training finished; the chief writes "
              f"{run.args.model_dir}")
        return None
    replaced = [model_files.read_metadata(path) if model_files.is_model_dir(path) else None
                for path in (run.args.model_dir, model_files.previous_dir(run.args.model_dir))]
    try:
        metadata = evaluate_and_save(run, history)
    except (KeyboardInterrupt, OSError) as error:
        interrupted = isinstance(error, KeyboardInterrupt)
        reason = "interrupted" if interrupted else f"failed ({error.strerror or error})"
        raise (Interrupted if interrupted else UserError)(
            f"saving the trained model {reason}: {left_as_it_was(run)}; run the same command "
            "with --resume to save it without training again") from None
    shutil.rmtree(run.work_dir, ignore_errors=True)
    print_summary(metadata, run.args.model_dir)
    model_files.print_what_was_replaced(metadata, run.args.model_dir, *replaced)
    return metadata


def evaluate_and_save(run, history):
    model = saveable_copy(run.model, run.recipe)
    results, probabilities = evaluate(model, run.x_test, run.y_test)
    metadata = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "settings": training_settings(run.args),
        "model": {"arch": run.recipe.arch, "batchnorm": run.recipe.batchnorm,
                  "conv_dropout": run.recipe.conv_dropout,
                  "dense_dropout": run.recipe.dense_dropout,
                  "dropout_from_epoch": run.recipe.dropout_from_epoch,
                  "dtype": "float32", "parameters": model.count_params()},
        "precision": run.policy,
        "device": hardware.describe_device(),
        "distribution": hardware.describe_distribution(run.strategy),
        **results,
        "history": history,
        "data": {"source": str(run.args.data) if run.args.data else "keras download",
                 "sha256": mnist_files.mnist_checksum(run.arrays), "train_images": len(run.x_train) - run.n_val,
                 "validation_images": run.n_val, "test_images": len(run.x_test)},
        "versions": hardware.library_versions(),
        "wall_seconds": round(time.perf_counter() - run.started, 1),
    }
    examples = augmented_examples(run.x_train[:6], run.recipe) if run.recipe.augment else None
    model_files.save_model_dir(model, run.args.model_dir, metadata, reports={
        "results": results, "x_test": run.x_test, "y_test": run.y_test,
        "probabilities": probabilities, "history": history, "examples": examples})
    return metadata


def run_training(args, strategy, callbacks=()):
    """Train, evaluate and save as the flags say; return the metadata (None on a worker that
    is not the chief). `callbacks`: more Keras callbacks for fit (benchmarks observe with them)."""
    run = prepare_training(args, strategy)
    return finish(run, fit(run, callbacks))


def comparison_dirs(args):
    """The model directories a run writes: MODEL_DIR, and MODEL_DIR-no-batchnorm beside it
    under --compare-batchnorm."""
    return [args.model_dir] + [f"{args.model_dir}-no-batchnorm"] * args.compare_batchnorm


def compare_batchnorm(args, strategy):
    """Train the network with and without batch norm (same seed, data and flags), keep both
    model directories, and print one side-by-side table."""
    seed = args.seed if args.seed is not None else interrupted_seed(args)
    seed = seed if seed is not None else int.from_bytes(os.urandom(3), "big")
    _, without = comparison_dirs(args)
    variants = {"batch norm": vars(args) | {"batchnorm": True},
                "no batch norm": vars(args) | {"batchnorm": False, "model_dir": without}}
    runs = {name: argparse.Namespace(**settings | {"seed": seed, "compare_batchnorm": False})
            for name, settings in variants.items()}
    results = {name: finished_run(run) or run_training(run, strategy)
               for name, run in runs.items()}
    if not hardware.is_chief(strategy):
        return None
    print(f"\nBatch norm compared (seed {seed}):")
    header = ("", "parameters", "test accuracy", "test loss", "wall time", "model directory")
    rows = [(name, f"{m['model']['parameters']:,}", f"{m['test_accuracy']:.2%}",
             f"{m['test_loss']:.4f}", cli.format_duration(m["wall_seconds"]), runs[name].model_dir)
            for name, m in results.items()]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(f"{cell:<{w}}" if i in (0, len(row) - 1) else f"{cell:>{w}}"
                        for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    return results


def interrupted_seed(args):
    """With --resume, the seed the interrupted comparison drew for itself, if it left one."""
    if not args.resume:
        return None
    for model_dir in comparison_dirs(args):
        settings = Path(f"{model_dir}.partial") / "settings.json"
        if settings.is_file():
            return json.loads(settings.read_text()).get("seed")
    return model_files.read_metadata(args.model_dir).get("settings", {}).get("seed")


def finished_run(args):
    """With --resume, the metadata of a variant that already finished with these settings."""
    if not args.resume or Path(f"{args.model_dir}.partial").exists():
        return None
    metadata, settings = model_files.read_metadata(args.model_dir), training_settings(args)
    saved = metadata.get("settings", {})
    return metadata if {key: saved.get(key) for key in settings} == settings else None


def print_summary(metadata, model_dir):
    settings, model, data = metadata["settings"], metadata["model"], metadata["data"]
    augmentation = (f"{settings['augmentation_engine']} (rotation {settings['rotation_range']:g} "
                    f"deg, zoom {settings['zoom_range']:g}, shift {settings['shift_range']:g})"
                    if settings["augment"] else "none")
    epochs = len(metadata["history"])
    cli.print_table([
        ("model", f"{model['arch']}, batch norm {'on' if model['batchnorm'] else 'off'}, "
                  f"dropout {model['conv_dropout']:g}/{model['dense_dropout']:g}"
                  + (f" from epoch {model['dropout_from_epoch']}"
                     if model.get("dropout_from_epoch", 1) > 1 else "")),
        ("parameters", f"{model['parameters']:,}"),
        ("training", f"{count(epochs, 'epoch')}, batch {settings['batch_size']}, "
                     f"{settings['optimizer']} (learning rate "
                     f"{settings['learning_rate'] or 'default'})"),
        ("augmentation", augmentation),
        ("data", f"{data['train_images']:,} train, {data['validation_images']:,} validation, "
                 f"{data['test_images']:,} test ({data['source']})"),
        ("device", f"{metadata['device']}, {metadata['precision']}, "
                   f"{metadata['distribution']}"),
        ("test loss", f"{metadata['test_loss']:.4f}"),
        ("test accuracy", f"{metadata['test_accuracy']:.2%}"),
        ("wall time", cli.format_duration(metadata["wall_seconds"])),
        ("saved to", f"{Path(model_dir).resolve()}/"),
    ])


def check_training_flags(args):
    """The mistakes that need no TensorFlow to find."""
    if args.compare_batchnorm and args.arch == "mlp":
        raise UsageError("--compare-batchnorm: the mlp has no batch norm layers to compare; "
                         "use another --arch")
    if args.arch == "mlp" and (args.conv_dropout or args.dense_dropout):
        raise UsageError("--conv-dropout/--dense-dropout: the mlp has no dropout layers; "
                         "use another --arch")
    if hardware.wants_cluster(args.distribute):
        hardware.check_tf_config(os.environ["TF_CONFIG"])
        if args.augment and args.augmentation_engine != "layers":
            raise UsageError("--augmentation-engine imagedatagenerator runs in one Python "
                             "process; use the layers engine to train on several workers")
        if args.seed is None:
            raise UsageError("several workers need the same --seed N on each (they split the "
                             "batches of one shuffled order)")
    mnist_files.check_data_path(args.data)
    if args.tensorboard:
        cli.check_tensorboard_dir(args.tensorboard)
    for model_dir in comparison_dirs(args):
        model_files.check_model_dir(model_dir)


def run_train(args):
    check_training_flags(args)  # before TensorFlow's seconds of start-up
    lazy.import_tensorflow_quietly()
    strategy = hardware.make_strategy(args.distribute)  # created once: a cluster allows no second one
    (compare_batchnorm if args.compare_batchnorm else run_training)(args, strategy)
    return 0


def run_evaluate(args):
    model_dir = model_files.resolve_model_dir(args.model_dir)
    lazy.import_tensorflow_quietly()
    model = load_model(model_dir)
    _, (x_test, y_test) = load_mnist(args.data)
    results, probabilities = evaluate(model, x_test, y_test)
    cli.print_table([("model", str(model_dir)), ("test loss", f"{results['test_loss']:.4f}"),
                 ("test accuracy", f"{results['test_accuracy']:.2%}"),
                 *[(f"digit {digit}", f"{accuracy:.2%}")
                   for digit, accuracy in results["per_digit_accuracy"].items()]])
    print(cli.confusion_matrix_text(results["confusion_matrix"]), flush=True)
    failures = figures.draw_reports(model_dir, results, x_test, y_test, probabilities,
                            history=model_files.read_metadata(model_dir).get("history"))
    if failures:
        error = next(iter(failures.values()))
        print(f"warning: could not write {', '.join(failures)} in {model_dir} "
              f"({error.strerror or error}); the scores above stand", file=sys.stderr)
    return 0


ACTIONS = {
    "train": (build_train_parser, run_train),
    "evaluate": (cli.build_evaluate_parser, run_evaluate),
    "predict": (cli.build_predict_parser, cli.run_predict),
    "serve": (cli.build_serve_parser, cli.run_serve),
}


def parse_flags(action, argv):
    """The flags of an action, with a hint where a word the parser did not take is an action
    (or nearly one): the action comes first."""
    prog = "mnist_digit_recognition.py" + ("" if action == "train" else f" {action}")
    parser = ACTIONS[action][0](prog)
    args, unknown = parser.parse_known_args(argv)
    actions = [a for a in ACTIONS if a != "train"]
    for word in unknown if action == "train" else []:
        meant = difflib.get_close_matches(word.lstrip("-"), actions, 1)
        if meant:
            hint = ("comes first" if meant[0] == word else "is a word, not a flag"
                    if meant[0] == word.lstrip("-") else f"is {meant[0]}?")
            parser.error(f"unrecognized arguments: {' '.join(unknown)}; the action {hint}: "
                         f"mnist_digit_recognition.py {meant[0]} [its flags and files]")
    flags = [flag for flag in parser._option_string_actions if flag.startswith("--")]
    for word in unknown:
        flag = word.partition("=")[0]
        meant = [f for f in flags if f.startswith(flag)] or difflib.get_close_matches(flag, flags, 1)
        if word.startswith("--") and meant:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}; did you mean "
                         f"{' or '.join(meant)}?")
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    action = argv.pop(0) if argv and argv[0] in ACTIONS else "train"
    try:
        args = parse_flags(action, argv)
        with interruption.sigterm_as_ctrl_c():
            return ACTIONS[action][1](args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:  # outside training (which says more): nothing was changed
        print("error: interrupted", file=sys.stderr)
        return Interrupted.exit_code
    except BrokenPipeError:  # the output went to a program that stopped reading (| head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
