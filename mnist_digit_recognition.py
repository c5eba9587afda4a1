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
augmentation, training, evaluation, saving and loading, prediction, command line. Beside it:
mnist_digits/pictures.py reads people's pictures of digits, mnist_digits/serve.py (with
serve_page.html) serves the drawing page and API, mnist_digits/figures.py draws the model
directory's pictures. Importing it only
defines things:

    import mnist_digit_recognition as mdr
    (x_train, y_train), (x_test, y_test) = mdr.load_mnist("path/to/mnist.npz")
    model = mdr.load_model("mnist_digit_recognition_model")
    digits, probabilities = mdr.predict(model, x_test[:5])
"""

import argparse
import contextlib
import dataclasses
import difflib
import functools
import gzip
import hashlib
import importlib
import importlib.util
import io
import json
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import zlib
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from mnist_digits import figures, pictures, serve

class LazyModule:
    """A module imported on its first use. TensorFlow and Keras take seconds to import, and
    --help, a mistyped flag and `predict` on LiteRT need neither."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attribute):
        # A probe (copy, pickle, inspect, hasattr(x, "__wrapped__")) imports nothing.
        if attribute == "_name" or attribute.startswith("__") and self._name not in sys.modules:
            raise AttributeError(attribute)
        return getattr(importlib.import_module(self._name), attribute)


tf, keras = LazyModule("tensorflow"), LazyModule("keras")


@contextlib.contextmanager
def quiet_stderr():
    """Keep what C++ code writes to stderr (TensorFlow's and LiteRT's start-up lines, which
    ignore TensorFlow's log level) out of the terminal."""
    sys.stderr.flush()
    saved_stderr, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(devnull)


def import_tensorflow_quietly():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with quiet_stderr():
        importlib.import_module("tensorflow")
        importlib.import_module("keras")


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

DEFAULT_MODEL_DIR = "mnist_digit_recognition_model"
IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
EVAL_BATCH_SIZE = 500  # inference only: larger batches are faster and give the same numbers


class UserError(Exception):
    """A mistake the user can fix: reported as one line, no traceback."""

    exit_code = 1


class UsageError(UserError):
    """A bad flag or path on the command line (exit status 2, as argparse uses)."""

    exit_code = 2


def first_line(error):
    """An exception's message in one line (its type where it has none), for a user's error."""
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def count(n, noun):
    """'1 epoch', '15 epochs', '60,000 images'."""
    return f"{n:,} {noun}{'s' * (n != 1)}"


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
NOT_MNIST = "expected a Keras-layout mnist.npz or a folder with the four IDX files"


def read_mnist_arrays(path=None):
    """Return the raw uint8 arrays {x_train, y_train, x_test, y_test}, checked.

    `path` is a Keras-layout .npz, or a folder holding the four IDX files (gzipped or not) or
    mnist.npz; None means Keras' own download and cache.
    """
    check_data_path(path)
    if path is None:
        arrays = download_mnist()
    elif Path(path).is_file():
        arrays = read_npz(Path(path))
    elif (Path(path) / "mnist.npz").is_file() and not any(Path(path).glob("*-idx?-ubyte*")):
        arrays = read_npz(Path(path) / "mnist.npz")  # a folder holding Keras' own file
    else:
        arrays = read_idx_folder(Path(path))
    check_mnist_arrays(arrays, source=path or "the Keras download")
    return arrays


def check_data_path(path):
    try:
        found = path is None or Path(path).exists()
    except OSError as error:  # a name too long, a folder we may not enter
        raise UsageError(f"--data {path}: {error.strerror}") from None
    if not found:
        named_by = "MNIST_DATA" if str(path) == os.environ.get("MNIST_DATA") else "--data"
        raise UsageError(f"MNIST data not found at {path} ({named_by}): pass --data PATH to a "
                         "mnist.npz or to a folder with the four IDX files")


def download_mnist():
    # Keras downloads without a timeout; a machine without network should fail, not hang.
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        with contextlib.redirect_stdout(ShownOnceMoving(sys.stdout)):
            (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as error:  # urllib, SSL and hash errors all mean the same to the user
        reason = first_line(error)
        raise UserError(f"could not download MNIST ({reason}): without network, pass --data "
                        "PATH (a mnist.npz or a folder with the four IDX files) "
                        "or set MNIST_DATA") from None
    finally:
        socket.setdefaulttimeout(previous_timeout)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


class ShownOnceMoving(io.TextIOBase):
    """stdout for Keras' download: its first line ("Downloading data from ...") is held back
    until the progress bar follows it, so that without network only our error is printed."""

    def __init__(self, stdout):
        self.stdout, self.held = stdout, ""

    def write(self, text):
        if self.held is not None:
            self.held += text
            if "\n" not in self.held.rstrip("\n"):
                return len(text)
            text, self.held = self.held, None
        return self.stdout.write(text)

    def flush(self):
        self.stdout.flush()

    def isatty(self):
        return self.stdout.isatty()


def read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = sorted(set(IDX_FILES) - set(npz.files))
            if not missing:
                return {name: npz[name] for name in IDX_FILES}
    except Exception:  # zip, zlib and numpy format errors (numpy's pickle advice is no help)
        raise UserError(f"{path} is not a readable .npz file, so not MNIST: {NOT_MNIST}") from None
    raise UserError(f"{path} lacks the array(s) {', '.join(missing)}: {NOT_MNIST} "
                    "(x_train, y_train, x_test, y_test)")


def read_idx_folder(folder):
    arrays = {}
    for name, stem in IDX_FILES.items():
        found = next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)
        if found is None:
            raise UserError(f"{folder} has no {stem} or {stem}.gz: {NOT_MNIST} "
                            f"({', '.join(IDX_FILES.values())})")
        arrays[name] = read_idx(found)
    return arrays


def read_idx(path):
    """Parse one IDX file (http://yann.lecun.com/exdb/mnist/ format), gzipped or not."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as error:
        raise UserError(f"{path} cannot be read ({error}): is it truncated or not gzip?") from None
    if len(data) < 4 or data[:3] != b"\0\0\x08" or data[3] not in (1, 3):
        raise UserError(f"{path} is not an MNIST IDX file (wrong magic number "
                        f"{data[:4].hex() or 'empty'}; expected 00000801 or 00000803)")
    header = 4 + 4 * data[3]
    if len(data) < header:
        raise UserError(f"{path} is truncated (its header is incomplete)")
    shape = struct.unpack(f">{data[3]}I", data[4:header])
    expected = header + math.prod(shape)
    if len(data) != expected:
        problem = "is truncated" if len(data) < expected else "has extra bytes"
        raise UserError(f"{path} {problem}: {len(data):,} bytes where its header "
                        f"{shape} promises {expected:,}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def check_mnist_arrays(arrays, source):
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or x.dtype != np.uint8:
            raise UserError(f"{source}: {split} images have shape {x.shape} and type {x.dtype}; "
                            "expected (N, 28, 28) uint8")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise UserError(f"{source}: {split} labels have shape {y.shape} and type {y.dtype}; "
                            "expected (N,) integers")
        if len(x) != len(y) or len(x) == 0:
            raise UserError(f"{source}: {len(x):,} {split} images but {len(y):,} labels")
        if y.min() < 0 or y.max() > 9:
            raise UserError(f"{source}: {split} labels range from {y.min()} to {y.max()}; "
                            "expected digits 0-9")


def mnist_checksum(arrays):
    """SHA-256 of the four arrays' bytes: the same for the npz and IDX layouts of one data set."""
    digest = hashlib.sha256()
    for name in IDX_FILES:
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()


def normalize_images(images):
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1], the network's input."""
    return (np.asarray(images, dtype=np.float32) / 255.0)[..., np.newaxis]


def load_mnist(path=None, arrays=None):
    """Return ((x_train, y_train), (x_test, y_test)) as Keras does, normalised for the network.

    Images are float32 (N, 28, 28, 1) in [0, 1], labels uint8. `path`: see read_mnist_arrays;
    or pass arrays already read.
    """
    arrays = read_mnist_arrays(path) if arrays is None else arrays
    return ((normalize_images(arrays["x_train"]), arrays["y_train"]),
            (normalize_images(arrays["x_test"]), arrays["y_test"]))


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------

@functools.cache
def fused_batchnorm_layer():
    """Keras' BatchNormalization, trained with TensorFlow's fused batch-norm kernel.

    Keras 3 normalises with a chain of separate mean, variance and arithmetic ops; TensorFlow's
    one fused kernel (what tf.keras 2 used) trains the cnn 1.2x as fast on two CPU cores
    (benchmarks/throughput.py). The arithmetic and the weights are the same, so the saved model
    uses Keras' own layer (saveable_copy) and loads anywhere.
    """
    class FusedBatchNormalization(keras.layers.BatchNormalization):
        def call(self, inputs, training=None, mask=None):
            if not (training and self.trainable) or mask is not None:
                return super().call(inputs, training=training, mask=mask)
            channels = inputs.shape[-1]
            images = tf.reshape(tf.cast(inputs, "float32"), [-1, 1, 1, channels])
            outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                images, self.gamma, self.beta, epsilon=self.epsilon, is_training=True)[:3]
            # The kernel returns the unbiased variance; Keras' moving average uses the biased one.
            count = tf.cast(tf.shape(images)[0], "float32")
            variance *= (count - 1) / count
            for average, value in ((self.moving_mean, mean), (self.moving_variance, variance)):
                average.assign(average * self.momentum + value * (1 - self.momentum))
            return tf.cast(tf.reshape(outputs, tf.shape(inputs)), self.compute_dtype)
    return FusedBatchNormalization


def build_model(arch=RECIPE.arch, batchnorm=True, conv_dropout=None, dense_dropout=None,
                dtype=None, bn_momentum=RECIPE.bn_momentum, fused_batchnorm=False):
    """Build (uncompiled) one of the networks; `dtype` is a Keras dtype policy name.

    Dropout None is the network's own (ARCH_DROPOUT). The output layer always computes in
    float32, so probabilities stay exact under mixed precision. `fused_batchnorm` trains faster
    (fused_batchnorm_layer); a model to save or share uses Keras' own layer.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {ARCHITECTURES}, not {arch!r}")
    conv_dropout = ARCH_DROPOUT[arch][0] if conv_dropout is None else conv_dropout
    dense_dropout = ARCH_DROPOUT[arch][1] if dense_dropout is None else dense_dropout
    L = keras.layers
    normalization = fused_batchnorm_layer() if fused_batchnorm else L.BatchNormalization

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
    return shard_by_data(dataset.prefetch(tf.data.AUTOTUNE))


def make_eval_dataset(x, y):
    return shard_by_data(tf.data.Dataset.from_tensor_slices((x, y)).batch(EVAL_BATCH_SIZE))


def shard_by_data(dataset):
    """Under tf.distribute, workers split each batch (the images are in memory, not files)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


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

def cpu_info():
    """(model name, set of feature flags) from /proc/cpuinfo; empty where there is none."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU", set()
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    return fields.get("model name", "unknown CPU"), set(fields.get("flags", "").split())


def fast_precision_policy():
    """The mixed-precision policy this hardware runs faster than float32, or "float32".

    bfloat16 on GPUs of compute capability 8.0+ and on CPUs with AVX-512 BF16 or AMX
    (oneDNN uses them for convolutions and matrix products); float16 on older tensor-core GPUs.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get(
            "compute_capability", (0, 0))
        if capability >= (8, 0):
            return "mixed_bfloat16"
        return "mixed_float16" if capability >= (7, 0) else "float32"
    _, flags = cpu_info()
    return "mixed_bfloat16" if flags & {"avx512_bf16", "amx_bf16"} else "float32"


def describe_device():
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
                 for gpu in gpus]
        return f"GPU: {', '.join(names)}"
    return f"CPU: {cpu_info()[0]} ({os.cpu_count()} cores)"


def choose_precision(requested):
    """"auto" (None) picks mixed precision where the hardware is fast at it; True forces it
    (bfloat16 where the hardware has no fast kind), False keeps float32."""
    fast = fast_precision_policy()
    if requested is None:
        return fast
    if requested:
        return fast if fast != "float32" else "mixed_bfloat16"
    return "float32"


DISTRIBUTE_MODES = ("auto", "none", "mirrored")


def make_strategy(distribute="auto"):
    """The tf.distribute strategy to train under.

    auto: MultiWorkerMirroredStrategy when TF_CONFIG describes a cluster (TensorFlow's
    convention), MirroredStrategy when more than one GPU is visible, else the default strategy
    (one device). mirrored: MirroredStrategy over every GPU, or over the CPU's logical devices
    when there is no GPU. none: the default strategy, whatever TF_CONFIG says.
    """
    if wants_cluster(distribute):
        check_tf_config(os.environ["TF_CONFIG"])
        patch_keras_for_multi_worker()
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if distribute == "mirrored" or (distribute == "auto" and len(gpus) > 1):
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    return tf.distribute.get_strategy()


def wants_cluster(distribute):
    return distribute == "auto" and bool(os.environ.get("TF_CONFIG"))


def check_tf_config(text):
    try:
        config = json.loads(text)
        task, workers = config["task"], config["cluster"]
        task_type, index = task["type"], int(task["index"])
        if not 0 <= index < len(workers[task_type]):
            raise IndexError
    except (ValueError, KeyError, TypeError, IndexError):
        raise UsageError("TF_CONFIG is not a valid cluster description (JSON with \"cluster\" "
                         "and a \"task\" of it): fix it, or unset it to train on one machine") \
            from None


def is_multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def worker_name(strategy):
    """This process's task in a cluster ("worker 1"), or None in a single process."""
    resolver = strategy.cluster_resolver if is_multi_worker(strategy) else None
    return f"{resolver.task_type} {resolver.task_id}" if resolver else None


def is_chief(strategy):
    """True in a single process, and in a cluster on the one task that writes the model:
    "chief" if the cluster has one, else worker 0 (TensorFlow's multi-worker convention)."""
    if not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    if "chief" in resolver.cluster_spec().as_dict():
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0


def describe_distribution(strategy):
    if is_multi_worker(strategy):
        jobs = strategy.cluster_resolver.cluster_spec().as_dict()
        workers = len(jobs.get("chief", [])) + len(jobs.get("worker", []))
        return (f"MultiWorkerMirroredStrategy, {workers} workers, "
                f"{strategy.num_replicas_in_sync} replicas")
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return f"MirroredStrategy, {strategy.num_replicas_in_sync} replicas"
    return "one device"


def patch_keras_for_multi_worker():
    """Work around Keras 3's fit() under MultiWorkerMirroredStrategy (keras-team/keras#20585).

    fit() fails twice there: it averages its first batch across workers to build the model
    (a structure the strategy cannot reduce), and it averages each scalar metric across workers
    along an axis 0 that scalars lack. Build from this worker's own first batch instead, and
    average metrics with no axis, as tf.distribute reduces scalars. Only multi-worker runs are
    touched; Keras' own code handles every other strategy.
    """
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer.reduce_per_replica, "patched_for_multi_worker", False):
        return
    keras_reduce, keras_build = trainer.reduce_per_replica, trainer.TensorFlowTrainer._maybe_symbolic_build

    def reduce_per_replica(values, strategy, reduction):
        if is_multi_worker(strategy) and reduction in ("auto", "mean"):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return keras_reduce(values, strategy, reduction)

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None and is_multi_worker(self.distribute_strategy):
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: self.distribute_strategy.experimental_local_results(v)[0],
                    next(batches))
                break
            iterator = None
        return keras_build(self, iterator=iterator, data_batch=data_batch)

    reduce_per_replica.patched_for_multi_worker = True
    trainer.reduce_per_replica = reduce_per_replica
    trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

class TrainingDiverged(UserError):
    """The loss exploded (or became NaN): nothing worth saving was learned."""


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
            write_atomically(path, json.dumps(rows, indent=1))
    return keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: started.append(time.perf_counter()),
        on_epoch_end=on_epoch_end)


def signals_to_handle(*numbers):
    """Those of the signals this code may handle: none outside the main thread (signals reach
    only it), nor one the process ignores (Ctrl-C in a background job) or C code handles."""
    if threading.current_thread() is not threading.main_thread():
        return []
    return [number for number in numbers
            if signal.getsignal(number) not in (signal.SIG_IGN, None)]


@contextlib.contextmanager
def sigterm_as_ctrl_c():
    """SIGTERM (a stopped container, `kill`) stops the program as Ctrl-C does; restored after."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    previous = {number: signal.signal(number, interrupt)
                for number in signals_to_handle(signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def stop_between_steps():
    """Ctrl-C and SIGTERM stop training at the end of the step under way: a KeyboardInterrupt
    raised inside TensorFlow can come out of it as another error (a TypeError while it traces
    the first step) or not at all. Yields a callback that raises KeyboardInterrupt there once a
    signal has come; a second signal raises it at once, and an error it causes inside
    TensorFlow is taken for it. Only the signals_to_handle."""
    requested, training = [], True

    def request(signum, frame):
        requested.append(signum)
        if len(requested) > 1 and training:
            raise KeyboardInterrupt

    def stop_if_requested(*_, **__):
        if requested:
            raise KeyboardInterrupt
    stopper = keras.callbacks.LambdaCallback(on_train_batch_end=stop_if_requested,
                                             on_test_batch_end=stop_if_requested)
    previous = {number: signal.signal(number, request)
                for number in signals_to_handle(signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopper
    except Exception:
        if len(requested) > 1:
            raise KeyboardInterrupt from None
        raise
    finally:
        training = False  # from here a signal only counts
        for number, handler in previous.items():
            signal.signal(number, handler)
    stop_if_requested()  # a signal during the last step's callbacks


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
        with stop_between_steps() as stopper:
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


def confusion_matrix_text(confusion):
    """The confusion matrix as lines of text: rows the true digit, columns the predicted."""
    lines = ["true \\ predicted " + "".join(f"{d:>6}" for d in range(NUM_CLASSES))]
    lines += [f"{true:>16} " + "".join(f"{n:>6}" for n in row)
              for true, row in enumerate(confusion)]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Saving and loading
# ---------------------------------------------------------------------------------------------

def is_model_dir(path):
    return (Path(path) / "model.keras").is_file()


def check_model_dir(model_dir):
    """Fail now, not after training, when the model directory cannot be (re)written."""
    path = Path(model_dir)
    try:
        if path.exists() and not path.is_dir():
            raise UsageError(f"--model-dir {path} is a file, not a directory: choose another path")
        if path.is_dir() and any(path.iterdir()) and not is_model_dir(path):
            raise UsageError(f"--model-dir {path} holds files that are not a model of this "
                             "program; refusing to replace them: choose another --model-dir")
        path.parent.mkdir(parents=True, exist_ok=True)
        os.rmdir(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as error:
        raise UsageError(f"cannot write the model directory {path} ({error.strerror}): "
                         "choose a writable --model-dir") from None


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


def new_sibling_dir(path):
    """An empty folder beside `path` with the permissions any mkdir gives (mkdtemp's are
    private, which would keep other users and serving containers from reading the model)."""
    while True:
        folder = path.parent / f".{path.name}.new-{secrets.token_hex(4)}"
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
            return folder


def save_model_dir(model, model_dir, metadata, reports=None):
    """Write model.keras, saved_model/, model.tflite, metadata.json and the pictures
    (draw_reports' arguments) into a new sibling folder, then swap it into place: an
    interrupted or failed save leaves the previous model intact. A model it replaces is kept
    as MODEL_DIR.previous (replace_directory)."""
    model_dir = Path(model_dir)
    if model.optimizer is not None and not model.optimizer.built:
        # An optimizer saved before its first step makes load_model warn that it skipped it.
        model.optimizer.build(model.trainable_variables)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = new_sibling_dir(model_dir)
    try:
        model.save(staging / "model.keras")
        model.export(str(staging / "saved_model"), verbose=False)
        with contextlib.redirect_stdout(io.StringIO()):  # the converter's progress lines
            model.export(str(staging / "model.tflite"), format="litert", verbose=False)
        (staging / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
        failures = figures.draw_reports(staging, **(reports or {}))
        if failures:
            raise next(iter(failures.values()))
        replace_directory(staging, model_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def previous_dir(model_dir):
    """Where training keeps the model it replaces (one generation): MODEL_DIR.previous."""
    return Path(f"{Path(model_dir)}.previous")


def replace_directory(new, target):
    """Put `new` in the place of `target`. A model there becomes previous_dir(target), and the
    one kept there before is deleted; where any rename fails, those before it are undone."""
    if not target.exists():
        os.rename(new, target)
        return
    previous = previous_dir(target)
    trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    renames = [(previous, trash / "previous")] if os.path.lexists(previous) else []
    renames += [(target, previous if is_model_dir(target) else trash / "replaced"), (new, target)]
    done = []
    try:
        for source, destination in renames:
            os.rename(source, destination)
            done.append((source, destination))
    except BaseException:
        for source, destination in reversed(done):
            os.rename(destination, source)
        trash.rmdir()
        raise
    shutil.rmtree(trash, ignore_errors=True)


def write_atomically(path, text):
    partial = Path(f"{path}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def check_saved_model(model_dir, what_to_do="train one first (python "
                      "mnist_digit_recognition.py) or pass the folder of a trained model"):
    """The model directory as a Path, once it is known to hold a model."""
    path = Path(model_dir)
    if not path.is_dir():
        raise UsageError(f"no model directory at {path}: {what_to_do}")
    if not is_model_dir(path):
        raise UsageError(f"{path} holds no model (no model.keras): {what_to_do}")
    return path


def load_model(model_dir=DEFAULT_MODEL_DIR):
    """Load a saved model.keras (plain keras.models.load_model works as well)."""
    path = check_saved_model(model_dir)
    try:
        return keras.models.load_model(path / "model.keras")
    except Exception as error:
        reason = first_line(error)
        raise UserError(f"{path / 'model.keras'} cannot be loaded ({reason}): "
                        "train the model again") from None


def read_metadata(model_dir):
    try:
        return json.loads((Path(model_dir) / "metadata.json").read_text())
    except (OSError, ValueError):
        return {}


def library_versions():
    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__}


# ---------------------------------------------------------------------------------------------
# Prediction on arrays and on people's pictures (read by pictures.py)
# ---------------------------------------------------------------------------------------------

def load_classifier(model_dir=DEFAULT_MODEL_DIR):
    """classify(images (N, 28, 28, 1) float32) -> probabilities (N, 10), safe to call from
    many threads. It runs model.tflite on LiteRT's interpreter where ai-edge-litert is
    installed (no TensorFlow to wait for), else model.keras on TensorFlow: the same digits."""
    path = check_saved_model(model_dir)
    lock = threading.Lock()  # one call at a time: an interpreter is not thread-safe
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = None
    if Interpreter is None or not (path / "model.tflite").is_file():
        import_tensorflow_quietly()
        model = load_model(path)

        def classify(images):
            with lock:
                return np.asarray(model.predict_on_batch(images))
        return classify
    try:
        with quiet_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
            # One image at a time, on one thread: more threads only wait on each other here.
            interpreter = Interpreter(model_path=str(path / "model.tflite"), num_threads=1)
            interpreter.allocate_tensors()
    except Exception as error:
        reason = first_line(error)
        raise UserError(f"{path / 'model.tflite'} cannot be loaded ({reason}): train the model "
                        "again, or delete model.tflite to use model.keras") from None
    image_in = interpreter.get_input_details()[0]["index"]
    probabilities_out = interpreter.get_output_details()[0]["index"]

    def classify(images):
        with lock:
            probabilities = []
            for image in np.asarray(images, np.float32):
                interpreter.set_tensor(image_in, image[np.newaxis])
                interpreter.invoke()
                probabilities.append(interpreter.get_tensor(probabilities_out)[0])
            return np.array(probabilities).reshape(-1, NUM_CLASSES)
    return classify


def read_picture(path):
    """pictures.read_picture, its refusal a UserError: (digits (K, 28, 28), the main one's index)."""
    try:
        return pictures.read_picture(path)
    except ValueError as error:
        raise UserError(str(error)) from None


def prepare_images(images):
    """File paths or arrays ((28, 28), (N, 28, 28) or (N, 28, 28, 1); uint8 0-255 or float
    0-1) -> the network's (N, 28, 28, 1) float32 input. A file holding several digits
    contributes its main one (pictures.find_digits)."""
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    if isinstance(images, (list, tuple)) and images and isinstance(images[0], (str, os.PathLike)):
        return np.stack([digits[main] for digits, main in map(read_picture, images)])[..., np.newaxis]
    array = np.asarray(images)
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim == 3:
        array = array[..., np.newaxis]
    if array.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"expected images of shape (28, 28) or (N, 28, 28[, 1]), got {array.shape}")
    return normalize_images(array[..., 0]) if array.dtype == np.uint8 else array.astype(np.float32)


def predict(model, images):
    """Classify images (arrays or file paths): return (digits, probabilities of shape (N, 10))."""
    probabilities = model.predict(prepare_images(images), batch_size=EVAL_BATCH_SIZE, verbose=0)
    return probabilities.argmax(axis=1), probabilities


def answer_digits(classify, digits, main):
    """What `predict --json` and the server answer for a picture whose digits, left to right,
    are `digits` (K, 28, 28): the main digit's class and probabilities, and, where it holds
    several, all of them."""
    probabilities = classify(digits[..., np.newaxis])
    answer = {"digit": int(probabilities[main].argmax()),
              "probability": round(float(probabilities[main].max()), 6),
              "probabilities": [round(float(p), 6) for p in probabilities[main]]}
    if len(probabilities) > 1:
        answer["digits"] = [int(p.argmax()) for p in probabilities]
    return answer


def picture_answerer(classify):
    """answer(grey) for the server: a grey picture's digits found and answered."""
    return lambda grey: answer_digits(classify, *pictures.find_digits(grey))


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

class Interrupted(UserError):
    """Ctrl-C or SIGTERM during training (exit status 130, as a shell reports Ctrl-C)."""

    exit_code = 130


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as a UsageError (one line, exit status 2) and takes
    flags only as written in full (--epoch is not --epochs)."""

    def __init__(self, **options):
        super().__init__(allow_abbrev=False, **options)

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def whole_number(minimum, maximum=math.inf):
    """An argparse type for a whole number from minimum to maximum."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
        if not minimum <= value <= maximum:
            limits = f">= {minimum}" if maximum == math.inf else f"from {minimum} to {maximum}"
            raise argparse.ArgumentTypeError(f"must be a whole number {limits}, not {text!r}")
        return value
    return parse


positive_int = whole_number(1)


def number_in(low, high, *, high_included=False, low_included=True):
    """An argparse type for a finite float in [low, high) (or as the flags say)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
        above = value >= low if low_included else value > low
        below = value <= high if high_included else value < high
        if not (math.isfinite(value) and above and below):
            left, right = "[" if low_included else "(", "]" if high_included else ")"
            limits = f"in {left}{low:g}, {high:g}{right}" if high < math.inf else \
                f"a finite number {'>=' if low_included else '>'} {low:g}"
            raise argparse.ArgumentTypeError(f"must be {limits}, not {text!r}")
        return value
    return parse


def build_train_parser(prog):
    r = RECIPE
    own = {arch: rates for arch, rates in ARCH_DROPOUT.items() if arch != "mlp"}
    parser = ArgumentParser(
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
        model.add_argument(f"--{which}-dropout", type=number_in(0, 1), default=None,
                           metavar="R", help=f"dropout {where}; 0 disables (default: the "
                                             f"network's own: {rates})")
    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=positive_int, default=r.epochs,
                          help=f"passes over the training images (default: {r.epochs})")
    training.add_argument("--batch-size", type=positive_int, default=r.batch_size,
                          help=f"images per step (default: {r.batch_size}); under --distribute "
                               "the replicas and workers split each batch")
    training.add_argument("--optimizer", choices=OPTIMIZERS, default=r.optimizer,
                          help=f"the optimizer, at its Keras defaults (default: {r.optimizer})")
    training.add_argument("--learning-rate", type=number_in(0, math.inf, low_included=False),
                          metavar="X", help="initial learning rate (default: Keras' default "
                                            "for the optimizer: 0.001, sgd 0.01)")
    training.add_argument("--validation-split", type=number_in(0, 1), metavar="F",
                          default=r.validation_split,
                          help="fraction of the training images held out to drive the "
                               f"learning-rate schedule (default: {r.validation_split}); the "
                               "test set is used only for the final evaluation; 0 trains on all")
    training.add_argument("--seed", type=whole_number(0, 2**32 - 1), default=r.seed,
                          help="seed for weights, shuffling and augmentation; on a CPU the same "
                               "seed gives the same metrics (default: none, a new run each time)")
    training.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction,
                          help="compute in bfloat16/float16 with float32 weights (default: only "
                               "where the hardware is fast at it)")
    training.add_argument("--distribute", choices=DISTRIBUTE_MODES, default="auto",
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
                              help=f"random rotation, degrees (default: {r.rotation_range:g})")
    augmentation.add_argument("--zoom-range", type=number_in(0, 1), default=r.zoom_range,
                              metavar="F", help=f"random zoom in [1-F, 1+F] (default: "
                                                f"{r.zoom_range:g})")
    augmentation.add_argument("--shift-range", type=number_in(0, 1), default=r.shift_range,
                              metavar="F", help="random shift, fraction of width and height "
                                                f"(default: {r.shift_range:g})")
    augmentation.add_argument("--augmentation-engine", choices=AUGMENTATION_ENGINES,
                              default=r.augmentation_engine,
                              help="layers (the default): one transform in the tf.data graph; "
                                   "imagedatagenerator: Keras' literal ImageDataGenerator")
    add_data_flag(parser)
    parser.add_argument("--model-dir", default=DEFAULT_MODEL_DIR,
                        type=lambda text: str(Path(text)),  # out/ and out: one folder
                        help=f"where to save the model (default: {DEFAULT_MODEL_DIR})")
    parser.add_argument("--train-size", type=positive_int, metavar="N",
                        help="use only the first N training images, for quick trials "
                             "(default: all 60,000)")
    return parser


def add_data_flag(parser):
    parser.add_argument("--data", default=os.environ.get("MNIST_DATA") or None, metavar="PATH",
                        help="a Keras-layout mnist.npz or a folder with the four IDX files "
                             "(default: $MNIST_DATA, else Keras' download and cache)")


def add_model_dir_flag(parser):
    parser.add_argument("--model-dir", help=f"the model to use (default: {DEFAULT_MODEL_DIR} "
                        "in the working directory, else the one beside this script)")


def build_evaluate_parser(prog):
    parser = ArgumentParser(prog=prog, description="Test loss, accuracy, per-digit accuracy and "
                            "confusion matrix of a saved model; redraws its confusion_matrix.png, "
                            "misclassified.png and training_curves.png.")
    add_data_flag(parser)
    add_model_dir_flag(parser)
    return parser


def build_predict_parser(prog):
    parser = ArgumentParser(prog=prog, description="Classify digit pictures (PNG, JPEG, BMP, "
                            "GIF; any size, colour or grey, either polarity). A picture with "
                            "several digits gets its main one (the tallest), and all of them "
                            "left to right.")
    parser.add_argument("files", nargs="+", metavar="FILE", help="image files to classify")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per file instead of text (with \"error\" "
                             "for a file that cannot be read)")
    add_model_dir_flag(parser)
    return parser


def build_serve_parser(prog):
    parser = ArgumentParser(prog=prog, description="Serve a page to draw digits on and see the "
                            "model's probabilities, and POST /predict (an image file's bytes or "
                            'JSON {"pixels": 28 rows of 28 numbers 0-255}). Ctrl-C stops it.')
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=whole_number(0, 65535), default=8000,
                        help="TCP port to listen on; 0 picks a free one (default: 8000)")
    parser.add_argument("--log-requests", action="store_true",
                        help="print a line per request (default: only those refused or failed)")
    add_model_dir_flag(parser)
    return parser


def resolve_model_dir(model_dir):
    """The model to use, checked before anything is loaded: --model-dir, else the default one
    in the working directory, else the one beside this script (the model the repository ships)."""
    if model_dir is not None:
        return check_saved_model(model_dir, "pass the --model-dir of a trained model")
    here, beside = Path(DEFAULT_MODEL_DIR), Path(__file__).resolve().parent / DEFAULT_MODEL_DIR
    found = next((path for path in (here, beside) if is_model_dir(path)), None)
    if found is None:
        raise UsageError(f"no model directory at {here} nor at {beside}: train one first "
                         "(python mnist_digit_recognition.py) or pass --model-dir")
    return found


def recipe_from(args):
    return Recipe(**{field.name: getattr(args, field.name) for field in dataclasses.fields(Recipe)
                     if hasattr(args, field.name)})


def training_settings(args):
    """What defines a training run: metadata records it, --resume must match it."""
    return {**dataclasses.asdict(recipe_from(args)), "mixed_precision": args.mixed_precision,
            "distribute": args.distribute, "data": str(args.data) if args.data else None,
            "train_size": args.train_size, "model_dir": str(args.model_dir)}


def prepare_work_dir(args, worker=None):
    """The folder of an in-progress run, `<model-dir>.partial`: checkpoint, history, settings.
    Each other worker of a cluster keeps its own, `<model-dir>.worker-N.partial`."""
    suffix = f".{worker.replace(' ', '-')}.partial" if worker else ".partial"
    work_dir = Path(f"{Path(args.model_dir)}{suffix}")
    settings_file, settings = work_dir / "settings.json", training_settings(args)
    if args.resume:
        if not settings_file.is_file():
            raise UsageError(f"--resume: no interrupted run in {work_dir}; "
                             "start a new run without --resume")
        previous = json.loads(settings_file.read_text())
        differences = [f"--{key.replace('_', '-')} {previous.get(key)!r} (now {value!r})"
                       for key, value in settings.items() if previous.get(key) != value]
        if differences:
            raise UsageError("--resume: the interrupted run used " + ", ".join(differences) +
                             ": repeat its command with --resume")
        return work_dir
    if (work_dir / "backup").exists():
        raise UsageError(f"an interrupted run is saved in {work_dir}: add --resume to continue "
                         "it, or delete that folder to start afresh")
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    settings_file.write_text(json.dumps(settings, indent=2) + "\n")
    return work_dir


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
    started, recipe, chief = time.perf_counter(), recipe_from(args).resolved(), is_chief(strategy)
    check_model_dir(args.model_dir)
    arrays = read_mnist_arrays(args.data)
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
    work_dir = prepare_work_dir(args, None if chief else worker_name(strategy))
    if args.seed is not None:
        keras.utils.set_random_seed(args.seed)
        tf.config.experimental.enable_op_determinism()
    policy = choose_precision(args.mixed_precision)
    with strategy.scope():
        model = compile_model(build_model_for(recipe, policy, fused_batchnorm=True), recipe)
    print(f"Training {recipe.arch} ({model.count_params():,} parameters) on "
          f"{len(x_train) - n_val:,} images, validating on {n_val:,}; "
          f"{describe_device()}, {policy}, {describe_distribution(strategy)}", flush=True)
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
        kept = "the saved model was not changed" if is_model_dir(run.args.model_dir) \
            else "nothing was saved"
        raise TrainingDiverged(f"{error}; {kept}") from None


def left_as_it_was(run):
    """What a run that stops before its save leaves, in words."""
    model_dir = run.args.model_dir
    return f"{model_dir} is as it was" if is_model_dir(model_dir) else \
        f"nothing was saved to {model_dir}"


def finish(run, history):
    """Evaluate once on the test set, save the model directory, print the summary. Until the
    model is saved the work folder keeps the trained weights: --resume then only saves."""
    if not run.chief:  # the chief evaluates and writes the model directory
        shutil.rmtree(run.work_dir, ignore_errors=True)
        print(f"{worker_name(run.strategy)}: training finished; the chief writes "
              f"{run.args.model_dir}")
        return None
    replaced = [read_metadata(path) if is_model_dir(path) else None
                for path in (run.args.model_dir, previous_dir(run.args.model_dir))]
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
    print_what_was_replaced(metadata, run.args.model_dir, *replaced)
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
        "device": describe_device(),
        "distribution": describe_distribution(run.strategy),
        **results,
        "history": history,
        "data": {"source": str(run.args.data) if run.args.data else "keras download",
                 "sha256": mnist_checksum(run.arrays), "train_images": len(run.x_train) - run.n_val,
                 "validation_images": run.n_val, "test_images": len(run.x_test)},
        "versions": library_versions(),
        "wall_seconds": round(time.perf_counter() - run.started, 1),
    }
    examples = augmented_examples(run.x_train[:6], run.recipe) if run.recipe.augment else None
    save_model_dir(model, run.args.model_dir, metadata, reports={
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
    if not is_chief(strategy):
        return None
    print(f"\nBatch norm compared (seed {seed}):")
    header = ("", "parameters", "test accuracy", "test loss", "wall time", "model directory")
    rows = [(name, f"{m['model']['parameters']:,}", f"{m['test_accuracy']:.2%}",
             f"{m['test_loss']:.4f}", format_duration(m["wall_seconds"]), runs[name].model_dir)
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
    return read_metadata(args.model_dir).get("settings", {}).get("seed")


def finished_run(args):
    """With --resume, the metadata of a variant that already finished with these settings."""
    if not args.resume or Path(f"{args.model_dir}.partial").exists():
        return None
    metadata, settings = read_metadata(args.model_dir), training_settings(args)
    saved = metadata.get("settings", {})
    return metadata if {key: saved.get(key) for key in settings} == settings else None


def format_duration(seconds):
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def print_summary(metadata, model_dir):
    settings, model, data = metadata["settings"], metadata["model"], metadata["data"]
    augmentation = (f"{settings['augmentation_engine']} (rotation {settings['rotation_range']:g} "
                    f"deg, zoom {settings['zoom_range']:g}, shift {settings['shift_range']:g})"
                    if settings["augment"] else "none")
    epochs = len(metadata["history"])
    print_table([
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
        ("wall time", format_duration(metadata["wall_seconds"])),
        ("saved to", f"{Path(model_dir).resolve()}/"),
    ])


def print_what_was_replaced(metadata, model_dir, replaced, dropped):
    """Say which model the save replaced (kept as MODEL_DIR.previous) and which it deleted:
    the metadata of the two that were there before, None where there was none."""
    def accuracy(old):
        known = isinstance(old.get("test_accuracy"), float)
        return f"test accuracy {old['test_accuracy']:.2%}" if known else "test accuracy unknown"

    if replaced is None:
        return
    print(f"The model it replaces ({accuracy(replaced)}, this one "
          f"{metadata['test_accuracy']:.2%}) is kept in {previous_dir(model_dir)}/: to use it "
          f"again, pass --model-dir {previous_dir(model_dir)} or move it back"
          + (f"; the one kept there before ({accuracy(dropped)}) is deleted." if dropped is not None
             else "."), flush=True)


def print_table(rows):
    width = max(len(name) for name, _ in rows)
    line = "-" * (width + 2 + max(len(value) for _, value in rows))
    print(line, *(f"{name:<{width}}  {value}" for name, value in rows), line, sep="\n",
          flush=True)


def check_training_flags(args):
    """The mistakes that need no TensorFlow to find."""
    if args.compare_batchnorm and args.arch == "mlp":
        raise UsageError("--compare-batchnorm: the mlp has no batch norm layers to compare; "
                         "use another --arch")
    if args.arch == "mlp" and (args.conv_dropout or args.dense_dropout):
        raise UsageError("--conv-dropout/--dense-dropout: the mlp has no dropout layers; "
                         "use another --arch")
    if wants_cluster(args.distribute):
        check_tf_config(os.environ["TF_CONFIG"])
        if args.augment and args.augmentation_engine != "layers":
            raise UsageError("--augmentation-engine imagedatagenerator runs in one Python "
                             "process; use the layers engine to train on several workers")
        if args.seed is None:
            raise UsageError("several workers need the same --seed N on each (they split the "
                             "batches of one shuffled order)")
    check_data_path(args.data)
    if args.tensorboard:
        check_tensorboard_dir(args.tensorboard)
    for model_dir in comparison_dirs(args):
        check_model_dir(model_dir)


def check_tensorboard_dir(folder):
    """A folder TensorBoard can write to, made only once it is known to be wanted."""
    if Path(folder).exists() and not Path(folder).is_dir():
        raise UsageError(f"cannot write TensorBoard logs to {folder}: it is a file; choose "
                         "another --tensorboard DIR")
    if importlib.util.find_spec("tensorboard") is None:  # TensorFlow 2.21 does not bring it
        raise UsageError("--tensorboard needs the tensorboard package: pip install "
                         "tensorboard, or leave out --tensorboard")
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot write TensorBoard logs to {folder} ({error.strerror}): "
                         "choose another --tensorboard DIR") from None


def run_train(args):
    check_training_flags(args)  # before TensorFlow's seconds of start-up
    import_tensorflow_quietly()
    strategy = make_strategy(args.distribute)  # created once: a cluster allows no second one
    (compare_batchnorm if args.compare_batchnorm else run_training)(args, strategy)
    return 0


def run_evaluate(args):
    model_dir = resolve_model_dir(args.model_dir)
    import_tensorflow_quietly()
    model = load_model(model_dir)
    _, (x_test, y_test) = load_mnist(args.data)
    results, probabilities = evaluate(model, x_test, y_test)
    print_table([("model", str(model_dir)), ("test loss", f"{results['test_loss']:.4f}"),
                 ("test accuracy", f"{results['test_accuracy']:.2%}"),
                 *[(f"digit {digit}", f"{accuracy:.2%}")
                   for digit, accuracy in results["per_digit_accuracy"].items()]])
    print(confusion_matrix_text(results["confusion_matrix"]), flush=True)
    failures = figures.draw_reports(model_dir, results, x_test, y_test, probabilities,
                            history=read_metadata(model_dir).get("history"))
    if failures:
        error = next(iter(failures.values()))
        print(f"warning: could not write {', '.join(failures)} in {model_dir} "
              f"({error.strerror or error}); the scores above stand", file=sys.stderr)
    return 0


def run_predict(args):
    classify = load_classifier(resolve_model_dir(args.model_dir))
    failed = 0
    for path in args.files:  # each answer as soon as it is known, in the order of the files
        try:
            digits, main = read_picture(path)
        except UserError as error:
            failed += 1
            print(f"error: {error}", file=sys.stderr, flush=True)
            if args.json:
                print(json.dumps({"file": path, "error": str(error)}), flush=True)
            continue
        answer = answer_digits(classify, digits, main)
        if args.json:
            print(json.dumps({"file": path, **answer}), flush=True)
        else:
            several = (f"; {len(digits)} digits found, left to right "
                       f"{''.join(map(str, answer['digits']))}") if len(digits) > 1 else ""
            print(f"{path}: {answer['digit']} ({answer['probability']:.1%}){several}", flush=True)
    return 1 if failed else 0


def run_serve(args):
    model_dir = resolve_model_dir(args.model_dir)
    classify = load_classifier(model_dir)
    metadata = read_metadata(model_dir)
    try:
        server = serve.make_server(picture_answerer(classify), args.host, args.port, {
            "status": "ok", "model": str(model_dir), "arch": metadata.get("model", {}).get("arch"),
            "test_accuracy": metadata.get("test_accuracy")}, log_requests=args.log_requests)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if not serve.is_loopback(args.host):
        print(f"warning: serving on {args.host}, beyond this machine, without authentication: "
              "anyone who can reach it can use it", file=sys.stderr)
    host = f"[{args.host}]" if ":" in args.host else args.host  # an IPv6 address
    print(f"Serving {model_dir} on http://{host}:{server.server_port}/ (Ctrl-C stops it)",
          flush=True)
    serve.serve_forever(server, serving_processes())
    print("Server stopped.", flush=True)
    return 0


def serving_processes():
    """A process per core the server may use, where it can fork safely: on Linux, with no
    TensorFlow loaded (its threads would not survive a fork; LiteRT runs none)."""
    if not sys.platform.startswith("linux") or "tensorflow" in sys.modules:
        return 1
    cores = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError):  # a container's CPU limit (cgroup v2)
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        cores = min(cores, max(1, math.ceil(int(quota) / int(period))))  # "max": no limit
    return cores


ACTIONS = {
    "train": (build_train_parser, run_train),
    "evaluate": (build_evaluate_parser, run_evaluate),
    "predict": (build_predict_parser, run_predict),
    "serve": (build_serve_parser, run_serve),
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
        with sigterm_as_ctrl_c():
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
