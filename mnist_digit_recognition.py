"""Train, evaluate and save a handwritten-digit recogniser on MNIST; use it and serve it.

    python mnist_digit_recognition.py --epochs 15 --batch-size 32     # train (the default action)
    python mnist_digit_recognition.py evaluate                        # score the saved model
    python mnist_digit_recognition.py predict my_digit.png            # classify image files
    python mnist_digit_recognition.py serve                           # draw digits in a browser

This file is the story of training, top to bottom: the recipe (every training default), loading
MNIST, the networks, the augmentation, training, evaluation, saving, the command line. What it
leans on is in the package beside it, mnist_digits/. Importing it only defines things:

    import mnist_digit_recognition as mdr
    (x_train, y_train), (x_test, y_test) = mdr.load_mnist("path/to/mnist.npz")
    model = mdr.load_model("mnist_digit_recognition_model")
    digits, probabilities = mdr.predict(model, x_test[:5])
    mdr.not_a_digit(x_test[:5])     # array([False, False, False, False, False])
"""

import argparse
import dataclasses
import math
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from mnist_digits.errors import missing_package_in_one_line

if __name__ == "__main__":  # a Python without the requirements: one line, not a traceback
    sys.excepthook = missing_package_in_one_line

try:  # Ctrl-C while these load is a stop like any other: one line, exit status 130
    import numpy as np

    from mnist_digits import actions, cli, hardware, interruption, lazy, mnist_files, model_files
    from mnist_digits.classifier import EVAL_BATCH_SIZE, not_a_digit, predict  # the API's (SPEC 6)
    from mnist_digits.cli import count
    from mnist_digits.errors import TrainingDiverged, UsageError
    from mnist_digits.lazy import keras, tf  # imported on first use: predict, --help need neither
    from mnist_digits.mnist_files import IMAGE_SHAPE, NUM_CLASSES
    from mnist_digits.model_files import DEFAULT_MODEL_DIR, load_model
except KeyboardInterrupt:
    if __name__ != "__main__":
        raise
    print("error: interrupted", file=sys.stderr)
    sys.exit(130)


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
        """The values a run uses: the network's own dropout where none is given."""
        conv, dense = dropout_rates(self.arch, self.conv_dropout, self.dense_dropout)
        return dataclasses.replace(
            self, conv_dropout=conv, dense_dropout=dense,
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


def dropout_rates(arch, conv_dropout=None, dense_dropout=None):
    """(conv, dense) dropout of a network: the network's own (ARCH_DROPOUT) where None."""
    own_conv, own_dense = ARCH_DROPOUT[arch]
    return (own_conv if conv_dropout is None else conv_dropout,
            own_dense if dense_dropout is None else dense_dropout)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

def load_mnist(path=None, arrays=None):
    """Return ((x_train, y_train), (x_test, y_test)) as Keras does, normalised for the network.

    Images are float32 (N, 28, 28, 1) in [0, 1], labels uint8. `path`: a Keras-layout .npz or a
    folder of the four IDX files; None: Keras' own download. Or pass the arrays already read.
    """
    arrays = mnist_files.read_mnist_arrays(path) if arrays is None else arrays
    return ((mnist_files.normalize_images(arrays["x_train"]), arrays["y_train"]),
            (mnist_files.normalize_images(arrays["x_test"]), arrays["y_test"]))


def split_validation(x, y, validation_split):
    """((x_fit, y_fit), (x_val, y_val)): the last `validation_split` of the training images
    held out (at least one when asked for), as Keras' fit does; validation None without."""
    n_val = max(1, round(len(x) * validation_split)) if validation_split else 0
    if n_val >= len(x):
        raise UsageError(f"{count(len(x), 'training image')} are too few for --validation-split "
                         f"{validation_split}: use more images or a smaller split")
    if n_val == 0:
        return (x, y), None
    return (x[:-n_val], y[:-n_val]), (x[-n_val:], y[-n_val:])


# ---------------------------------------------------------------------------------------------
# The networks
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
    conv_dropout, dense_dropout = dropout_rates(arch, conv_dropout, dense_dropout)
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
        hidden = [*conv(32, 3, activation=None), *batch_norm(), L.ReLU(dtype=dtype),
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

def make_augmenter(recipe=RECIPE):
    """ImageDataGenerator's random rotation, zoom and shift as one function on a batch,
    augment(images, seed): the same seed (two integers), the same transforms.

    Keras' RandomRotation, RandomZoom and RandomTranslation layers would resample each image
    three times, blurring it a little each time (measured: test loss 0.030 against 0.023 after
    6 epochs); this composes the three into one affine transform and resamples once, as
    ImageDataGenerator does, at half the cost. The nearest edge pixel fills the corners.
    """
    rotation, zoom, shift = recipe.rotation_range, recipe.zoom_range, recipe.shift_range

    def augment(images, seed):
        batch, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]
        # Each image's rotation, two zooms and two shifts, uniform in [-1, 1] times their range
        draws = tf.random.stateless_uniform((5, batch), seed, -1.0, 1.0)
        angle = draws[0] * rotation * (math.pi / 180)
        zoom_x, zoom_y = 1 + draws[1] * zoom, 1 + draws[2] * zoom
        shift_x, shift_y = draws[3] * shift * width, draws[4] * shift * height
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


def make_train_dataset(x, y, batch_size, augmenter, seeds):
    """The batches of each epoch one after the other, each epoch shuffled and augmented from
    its own seeds (interruption.epoch_seeds: a resumed run continues the same streams);
    augmented in the tf.data graph in parallel with training."""
    images = tf.data.Dataset.from_tensor_slices((x, y))

    def epoch(seed):
        batches = images.shuffle(len(x), seed=seed[0]).batch(batch_size)
        if augmenter is None:
            return batches
        return batches.enumerate().map(
            lambda step, batch: (augmenter(batch[0], tf.stack([seed[1], step])), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE)
    dataset = tf.data.Dataset.from_tensor_slices(seeds).flat_map(epoch)
    return hardware.shard_by_data(dataset.prefetch(tf.data.AUTOTUNE))


def make_eval_dataset(x, y):
    return hardware.shard_by_data(tf.data.Dataset.from_tensor_slices((x, y))
                                  .batch(EVAL_BATCH_SIZE))


def augmented_examples(x, recipe=RECIPE, versions=7, seed=0):
    """Each of the images x (N, 28, 28, 1) followed by `versions` augmented copies of it, as
    the recipe's engine makes them for training: (N, 1 + versions, 28, 28)."""
    repeated = np.repeat(x, versions, axis=0)
    if recipe.augmentation_engine == "imagedatagenerator":
        flow = make_image_data_generator(recipe).flow(repeated, batch_size=len(repeated),
                                                      shuffle=False, seed=seed)
        augmented = next(flow)
    else:
        augmented = np.asarray(make_augmenter(recipe)(tf.constant(repeated), [seed, 0]))
    augmented = augmented.reshape(len(x), versions, 28, 28)
    return np.concatenate([x.reshape(len(x), 1, 28, 28), augmented], axis=1)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

# A training loss above this has diverged (chance level is ln 10 = 2.3). Not only NaN, as Keras'
# TerminateOnNaN checks: the cross-entropy of a softmax, computed from its logits, has no ceiling
# and can stay finite at 1e31.
DIVERGED_LOSS = 1e4


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


def epoch_logger(rows):
    """A callback that appends each epoch's metrics and duration to `rows`."""
    started = []

    def on_epoch_end(epoch, logs):
        del rows[epoch:]  # an epoch redone after an interruption replaces its first record
        rows.append({"epoch": epoch + 1, **{key: float(value) for key, value in logs.items()},
                     "epoch_seconds": round(time.perf_counter() - started[-1], 3)})
    return keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: started.append(time.perf_counter()),
        on_epoch_end=on_epoch_end)


def train(model, x_train, y_train, recipe=RECIPE, *, work_dir=None, callbacks=(), verbose=None):
    """Fit a compiled model to the data as the recipe says; return the history, a dict per epoch.

    The validation split drives ReduceLROnPlateau, on top of learning_rate_schedule. With a
    `work_dir`, a checkpoint after every epoch and the history so far are kept there, and
    calling train again with it resumes an interrupted run as if it had never stopped (each
    epoch's random streams come from its own seeds). Ctrl-C and SIGTERM raise KeyboardInterrupt
    at the end of the step under way.
    """
    (x_fit, y_fit), validation = split_validation(x_train, y_train, recipe.validation_split)
    if verbose is None:  # a live progress bar on a terminal, a line per epoch in a log file
        verbose = 1 if sys.stdout.isatty() else 2
    first_epoch = interruption.restore(model, work_dir, recipe.epochs)  # 0 unless resumed
    seeds = interruption.epoch_seeds(recipe.seed, recipe.epochs)
    if recipe.augment and recipe.augmentation_engine == "imagedatagenerator":
        train_data = interruption.epoch_flows(make_image_data_generator(recipe), x_fit, y_fit,
                                              recipe.batch_size, seeds[first_epoch:])
    else:
        augmenter = make_augmenter(recipe) if recipe.augment else None
        train_data = make_train_dataset(x_fit, y_fit, recipe.batch_size, augmenter,
                                        seeds[first_epoch:])

    def stop_if_diverged(batch, logs):
        if not logs.get("loss", 0.0) < DIVERGED_LOSS:  # NaN is not below it either
            model.stop_training = True

    history = interruption.read_history(work_dir)[:first_epoch]
    late_dropout, restore_dropout = dropout_from_epoch(model, recipe.resolved().dropout_from_epoch)
    # After the scheduler: it logs the rate each epoch ran at, before the plateau cuts it.
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_loss" if validation else "loss",
                                                factor=recipe.lr_factor,
                                                patience=recipe.plateau_patience,
                                                min_lr=recipe.min_learning_rate)
    standard_callbacks = [
        late_dropout, interruption.reseeded_dropout(model, seeds),
        keras.callbacks.LearningRateScheduler(learning_rate_schedule(recipe)), plateau,
        keras.callbacks.LambdaCallback(on_train_batch_end=stop_if_diverged),
        epoch_logger(history),
        *([interruption.epoch_checkpoint(model, work_dir, history, plateau)] if work_dir else []),
    ]
    try:
        with interruption.stop_between_steps(model.distribute_strategy) as stopper:
            model.fit(train_data, initial_epoch=first_epoch, epochs=recipe.epochs, shuffle=False,
                      steps_per_epoch=math.ceil(len(x_fit) / recipe.batch_size), verbose=verbose,
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
# Evaluation
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
# The training command line
# ---------------------------------------------------------------------------------------------

def build_train_parser(prog):
    r, number_in, whole_number = RECIPE, cli.number_in, cli.whole_number
    others = ",".join(action for action in ACTIONS if action != "train")
    parser = cli.ArgumentParser(
        prog=prog, usage=f"%(prog)s [flags]  (train: the default action)\n       "
                         f"%(prog)s {{{others}}} ...  (each with its own --help)",
        description="Train a digit recogniser on MNIST, evaluate it on the test set "
        "and save it. Other actions, each with its own --help: 'evaluate' scores a saved model, "
        "'predict FILE...' classifies image files, 'serve' opens a page to draw digits on. "
        "The action comes first: mnist_digit_recognition.py predict --json d.png")
    model = parser.add_argument_group("model")
    model.add_argument("--arch", choices=ARCHITECTURES, default=r.arch,
                       help="the network (default: %(default)s; README describes each)")
    model.add_argument("--no-batchnorm", dest="batchnorm", action="store_false",
                       help="leave out every BatchNormalization layer (default: keep them)")
    model.add_argument("--compare-batchnorm", action="store_true",
                       help="train with and without batch norm (same seed and data), keep both "
                            "(the second in MODEL_DIR-no-batchnorm) and print them side by side")
    for which, index, where in (("conv", 0, "after each convolutional block"),
                                ("dense", 1, "before the output layer")):
        rates = ", ".join(f"{arch} {rates[index]:g}" + (
            f" from epoch {DROPOUT_FROM_EPOCH[arch]}" if arch in DROPOUT_FROM_EPOCH else "")
            for arch, rates in ARCH_DROPOUT.items() if arch != "mlp")
        model.add_argument(f"--{which}-dropout", type=number_in(0, 1), metavar="R",
                           help=f"dropout {where}; 0 disables (default: the network's own: "
                                f"{rates})")
    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=whole_number(1), default=r.epochs,
                          help="passes over the training images (default: %(default)s)")
    training.add_argument("--batch-size", type=whole_number(1), default=r.batch_size,
                          help="images per step (default: %(default)s); under --distribute the "
                               "replicas and workers split each batch")
    training.add_argument("--optimizer", choices=OPTIMIZERS, default=r.optimizer,
                          help="the optimizer, at its Keras defaults (default: %(default)s)")
    training.add_argument("--learning-rate", type=number_in(0, math.inf, low_included=False),
                          metavar="X", help="initial learning rate (default: Keras' default "
                                            "for the optimizer: 0.001, sgd 0.01)")
    training.add_argument("--validation-split", type=number_in(0, 1), metavar="F",
                          default=r.validation_split,
                          help="fraction of the training images held out to drive the "
                               "learning-rate schedule (default: %(default)s); the test set is "
                               "used only for the final evaluation; 0 trains on all")
    training.add_argument("--seed", type=whole_number(0, 2**32 - 1), default=r.seed,
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
    augmentation.add_argument("--rotation-range", type=number_in(0, 180, high_included=True),
                              default=r.rotation_range, metavar="DEG",
                              help="random rotation, degrees (default: %(default)g)")
    augmentation.add_argument("--zoom-range", type=number_in(0, 1), default=r.zoom_range,
                              metavar="F", help="random zoom in [1-F, 1+F] (default: %(default)g)")
    augmentation.add_argument("--shift-range", type=number_in(0, 1), default=r.shift_range,
                              metavar="F", help="random shift, fraction of width and height "
                                                "(default: %(default)g)")
    augmentation.add_argument("--augmentation-engine", choices=AUGMENTATION_ENGINES,
                              default=r.augmentation_engine,
                              help="layers (the default): one transform in the tf.data graph; "
                                   "imagedatagenerator: Keras' literal ImageDataGenerator")
    cli.add_data_flag(parser)
    parser.add_argument("--model-dir", default=DEFAULT_MODEL_DIR,
                        type=lambda text: str(Path(text)),  # out/ and out: one folder
                        help="where to save the model (default: %(default)s)")
    parser.add_argument("--train-size", type=whole_number(1), metavar="N",
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


def run_train(args):
    """The default action: check the flags, start TensorFlow, train as they say (twice, with and
    without batch norm, under --compare-batchnorm)."""
    cli.check_training_flags(args)  # before TensorFlow's seconds of start-up
    lazy.import_tensorflow_quietly()
    strategy = hardware.make_strategy(args.distribute)  # created once: a cluster allows no second
    if args.compare_batchnorm:
        cli.compare_batchnorm(args, lambda run: train_evaluate_save(run, strategy),
                              training_settings)
    else:
        train_evaluate_save(args, strategy)
    return 0


def train_evaluate_save(args, strategy, callbacks=()):
    """Train as the flags say, evaluate once on the test set, save the model directory and print
    the summary; return the metadata saved (None on a worker that is not the chief).
    `callbacks`: more Keras callbacks for fit (benchmarks observe with them)."""
    started, recipe, chief = time.perf_counter(), recipe_from(args).resolved(), \
        hardware.is_chief(strategy)
    arrays = mnist_files.read_mnist_arrays(args.data)
    (x_train, y_train), (x_test, y_test) = load_mnist(arrays=arrays)
    x_train, y_train = x_train[:args.train_size], y_train[:args.train_size]
    (x_fit, _), _ = split_validation(x_train, y_train, recipe.validation_split)
    n_val = len(x_train) - len(x_fit)
    cli.check_sizes(args, len(arrays["x_train"]), len(x_fit))
    work_dir = interruption.prepare_work_dir(args.model_dir, training_settings(args), args.resume,
                                             None if chief else hardware.worker_name(strategy))
    if args.seed is not None:
        keras.utils.set_random_seed(args.seed)
        tf.config.experimental.enable_op_determinism()
    policy = hardware.choose_precision(args.mixed_precision)
    with strategy.scope():
        model = compile_model(build_model_for(recipe, policy, fused_batchnorm=True), recipe)
    print(f"Training {recipe.arch} ({model.count_params():,} parameters) on "
          f"{len(x_fit):,} images, validating on {n_val:,}; "
          f"{hardware.describe_device()}, {policy}, {hardware.describe_distribution(strategy)}",
          flush=True)
    if args.tensorboard and chief:
        callbacks = [*callbacks, keras.callbacks.TensorBoard(log_dir=args.tensorboard)]
    with interruption.training_stops_explained(work_dir, args.model_dir):
        history = train(model, x_train, y_train, recipe, work_dir=work_dir, callbacks=callbacks)
    if not chief:  # the chief evaluates and writes the model directory
        shutil.rmtree(work_dir, ignore_errors=True)
        print(f"{hardware.worker_name(strategy)}: training finished; the chief writes "
              f"{args.model_dir}")
        return None
    replaced = model_files.generations(args.model_dir)
    with interruption.saving_stops_explained(args.model_dir) as check:
        model = model_files.saveable_copy(model, build_model_for(recipe, dtype="float32"))
        results, probabilities = evaluate(model, x_test, y_test)
        metadata = {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
            "settings": training_settings(args),
            "model": {"arch": recipe.arch, "batchnorm": recipe.batchnorm,
                      "conv_dropout": recipe.conv_dropout, "dense_dropout": recipe.dense_dropout,
                      "dropout_from_epoch": recipe.dropout_from_epoch,
                      "dtype": "float32", "parameters": model.count_params()},
            "precision": policy,
            "device": hardware.describe_device(),
            "distribution": hardware.describe_distribution(strategy),
            **results,
            "history": history,
            "data": {"source": str(args.data) if args.data else "keras download",
                     "sha256": mnist_files.mnist_checksum(arrays),
                     "train_images": len(x_fit), "validation_images": n_val,
                     "test_images": len(x_test)},
            "versions": hardware.library_versions(),
            "wall_seconds": round(time.perf_counter() - started, 1),
        }
        examples = augmented_examples(x_train[:6], recipe) if recipe.augment else None
        model_files.save_model_dir(model, args.model_dir, metadata, check=check, reports={
            "results": results, "x_test": x_test, "y_test": y_test,
            "probabilities": probabilities, "history": history, "examples": examples})
    shutil.rmtree(work_dir, ignore_errors=True)
    cli.print_summary(metadata, args.model_dir)
    model_files.print_what_was_replaced(metadata, args.model_dir, *replaced)
    return metadata


# ---------------------------------------------------------------------------------------------
# The other actions, and main
# ---------------------------------------------------------------------------------------------

def run_evaluate(args):
    model_dir = model_files.resolve_model_dir(args.model_dir)
    lazy.import_tensorflow_quietly()
    model = load_model(model_dir)
    _, (x_test, y_test) = load_mnist(args.data)
    results, probabilities = evaluate(model, x_test, y_test)
    actions.print_evaluation(model_dir, results)
    actions.redraw_reports(model_dir, results, x_test, y_test, probabilities)
    return 0


ACTIONS = {  # each action's flags and what it runs
    "train": (build_train_parser, run_train),
    "evaluate": (actions.build_evaluate_parser, run_evaluate),
    "predict": (actions.build_predict_parser, actions.run_predict),
    "serve": (actions.build_serve_parser, actions.run_serve),
}


def parse_flags(action, argv):
    """The flags of an action, with a hint where a word the parser did not take is an action
    (or nearly one): the action comes first."""
    prog = "mnist_digit_recognition.py" + ("" if action == "train" else f" {action}")
    others = [name for name in ACTIONS if name != "train"] if action == "train" else []
    return cli.parse_flags(ACTIONS[action][0](prog), argv, others)


def main(argv=None):
    """The command line: `[ACTION] [flags]`, training when no action is named. Returns the exit
    status; a user's mistake ends in one line on stderr, never a traceback (cli.run_action)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    action = argv.pop(0) if argv and argv[0] in ACTIONS else "train"
    return cli.run_action(lambda: ACTIONS[action][1](parse_flags(action, argv)))


if __name__ == "__main__":
    sys.exit(main())
