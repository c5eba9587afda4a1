"""Train, evaluate, save and use a handwritten-digit recogniser on MNIST.

    python mnist_digit_recognition.py --epochs 15 --batch-size 32     # train (the default action)
    python mnist_digit_recognition.py evaluate                        # score the saved model
    python mnist_digit_recognition.py predict my_digit.png            # classify image files

Training loads MNIST, holds out part of the training images for validation, builds a
convolutional network (batch norm and dropout configurable), trains it with random rotation,
zoom and shift of the images (the augmentation of Keras' ImageDataGenerator, done in the
tf.data graph by default), lowers the learning rate when the validation loss stops improving,
evaluates once on the test set and saves the model directory:

    mnist_digit_recognition_model/
        model.keras      keras.models.load_model("mnist_digit_recognition_model/model.keras")
        saved_model/     tf.saved_model.load(...), TensorFlow Serving
        metadata.json    settings, test loss and accuracy, per-epoch history, versions

The file reads top to bottom: data, model, augmentation, training, evaluation, saving and
loading, prediction, command line. Importing it only defines things:

    import mnist_digit_recognition as mdr
    (x_train, y_train), (x_test, y_test) = mdr.load_mnist("path/to/mnist.npz")
    model = mdr.load_model("mnist_digit_recognition_model")
    digits, probabilities = mdr.predict(model, x_test[:5])
"""

import argparse
import csv
import gzip
import hashlib
import json
import math
import os
import platform
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
import zlib
from datetime import datetime, timezone
from pathlib import Path

if __name__ == "__main__":
    # Run as a program: keep TensorFlow's C++ start-up chatter out of the user's terminal.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf
from keras import layers

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


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def read_mnist_arrays(path=None):
    """Return the raw uint8 arrays {x_train, y_train, x_test, y_test}, checked.

    `path` is a Keras-layout .npz or a folder holding the four IDX files (gzipped or not);
    None means Keras' own download and cache.
    """
    if path is None:
        arrays = download_mnist()
    else:
        path = Path(path)
        if path.is_dir():
            arrays = read_idx_folder(path)
        elif path.is_file():
            arrays = read_npz(path)
        else:
            raise UsageError(f"MNIST data not found at {path}: pass --data PATH to a mnist.npz "
                             "or to a folder with the four IDX files")
    check_mnist_arrays(arrays, source=path or "the Keras download")
    return arrays


def download_mnist():
    # Keras downloads without a timeout; a machine without network should fail, not hang.
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as error:  # urllib, SSL and hash errors all mean the same to the user
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"could not download MNIST ({reason}): without network, pass --data "
                        "PATH (a mnist.npz or a folder with the four IDX files) "
                        "or set MNIST_DATA") from None
    finally:
        socket.setdefaulttimeout(previous_timeout)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = sorted(set(IDX_FILES) - set(npz.files))
            if missing:
                raise UserError(f"{path} lacks the array(s) {', '.join(missing)}: expected a "
                                "Keras-layout mnist.npz (x_train, y_train, x_test, y_test)")
            return {name: npz[name] for name in IDX_FILES}
    except UserError:
        raise
    except Exception as error:  # zipfile, zlib, numpy format and pickle errors
        raise UserError(f"{path} is not a readable .npz file ({error}): expected a "
                        "Keras-layout mnist.npz") from None


def read_idx_folder(folder):
    arrays = {}
    for name, stem in IDX_FILES.items():
        candidates = [folder / stem, folder / f"{stem}.gz"]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise UserError(f"{folder} has no {stem} or {stem}.gz: an IDX folder needs all "
                            f"four files ({', '.join(IDX_FILES.values())})")
        arrays[name] = read_idx(found)
    return arrays


def read_idx(path):
    """Parse one IDX file (http://yann.lecun.com/exdb/mnist/ format), gzipped or not."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as error:
        raise UserError(f"{path} cannot be read ({error}): is it truncated or not gzip?") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or data[3] not in (1, 3):
        raise UserError(f"{path} is not an MNIST IDX file (wrong magic number "
                        f"{data[:4].hex() or 'empty'}; expected 00000801 or 00000803)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path} is truncated (its header is incomplete)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
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


def load_mnist(path=None):
    """Return ((x_train, y_train), (x_test, y_test)) as Keras does, normalised for the network.

    Images are float32 (N, 28, 28, 1) in [0, 1], labels uint8. `path`: see read_mnist_arrays.
    """
    arrays = read_mnist_arrays(path)
    return ((normalize_images(arrays["x_train"]), arrays["y_train"]),
            (normalize_images(arrays["x_test"]), arrays["y_test"]))


def default_data_path():
    return os.environ.get("MNIST_DATA") or None


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------

ARCHITECTURES = ("cnn", "classic-cnn", "deep-cnn", "mlp")
# Each network's own dropout rates (after each convolutional block, before the output layer).
ARCH_DROPOUT = {"cnn": (0.4, 0.4), "classic-cnn": (0.25, 0.5), "deep-cnn": (0.25, 0.5),
                "mlp": (0.0, 0.0)}
# Keras' default of 0.99 makes the inference statistics lag for hundreds of steps, so short
# runs score near chance; 0.9 (PyTorch's default) settles within a few dozen.
BN_MOMENTUM = 0.9


class FusedBatchNormalization(layers.BatchNormalization):
    """Keras' BatchNormalization, trained with TensorFlow's fused batch-norm kernel.

    Keras 3 normalises with a chain of separate mean, variance and arithmetic ops; TensorFlow's
    single fused kernel (what tf.keras 2 used) does it in one. On this project's 2-core CPU the
    gain measured from nothing to 7% in float32 (benchmarks/throughput.py, noisy machines).
    The arithmetic and the weights are the same, so the model that is saved uses Keras' own
    layer and loads anywhere; inference runs Keras' code unchanged.
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or self.axis != [-1] \
                or inputs.shape.rank not in (2, 4):
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        images = tf.reshape(tf.cast(inputs, "float32"), [-1, 1, 1, channels]) \
            if inputs.shape.rank == 2 else tf.cast(inputs, "float32")
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            images, self.gamma if self.scale else tf.ones([channels]),
            self.beta if self.center else tf.zeros([channels]),
            epsilon=self.epsilon, is_training=True)[:3]
        # The kernel returns the unbiased variance; Keras' moving average uses the biased one.
        count = tf.cast(tf.size(images) // channels, "float32")
        variance *= (count - 1) / count
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1 - self.momentum))
        self.moving_variance.assign(
            self.moving_variance * self.momentum + variance * (1 - self.momentum))
        return tf.cast(tf.reshape(outputs, tf.shape(inputs)), self.compute_dtype)


def build_model(arch="cnn", batchnorm=True, conv_dropout=None, dense_dropout=None, dtype=None,
                fused_batchnorm=False):
    """Build (uncompiled) one of the model families; `dtype` is a Keras dtype policy name.

    The output layer always computes in float32, so probabilities stay exact under mixed
    precision. `fused_batchnorm` trains faster (FusedBatchNormalization); a model to save or
    share is built without it.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {ARCHITECTURES}, not {arch!r}")
    normalization = FusedBatchNormalization if fused_batchnorm else layers.BatchNormalization
    conv_dropout = ARCH_DROPOUT[arch][0] if conv_dropout is None else conv_dropout
    dense_dropout = ARCH_DROPOUT[arch][1] if dense_dropout is None else dense_dropout

    def maybe_batchnorm():
        return [normalization(momentum=BN_MOMENTUM, dtype=dtype)] if batchnorm else []

    builders = {"cnn": cnn_layers, "classic-cnn": classic_cnn_layers, "deep-cnn": deep_cnn_layers,
                "mlp": mlp_layers}
    hidden = builders[arch](maybe_batchnorm, conv_dropout, dense_dropout, dtype)
    output = layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name="probabilities")
    return keras.Sequential([keras.Input(IMAGE_SHAPE), *hidden, output],
                            name=arch.replace("-", "_"))


def cnn_layers(maybe_batchnorm, conv_dropout, dense_dropout, dtype):
    """Seven convolutions, batch norm after each: 32C3-32C3-32C5S2, 64C3-64C3-64C5S2, 128C4."""
    def conv(filters, kernel, strides=1):
        padding = "same" if strides > 1 else "valid"
        return [layers.Conv2D(filters, kernel, strides=strides, padding=padding,
                              activation="relu", dtype=dtype), *maybe_batchnorm()]

    return [
        *conv(32, 3), *conv(32, 3), *conv(32, 5, strides=2),
        layers.Dropout(conv_dropout, dtype=dtype),
        *conv(64, 3), *conv(64, 3), *conv(64, 5, strides=2),
        layers.Dropout(conv_dropout, dtype=dtype),
        *conv(128, 4), layers.Flatten(dtype=dtype),
        layers.Dropout(dense_dropout, dtype=dtype),
    ]


def classic_cnn_layers(maybe_batchnorm, conv_dropout, dense_dropout, dtype):
    """Conv32-BN-ReLU, Conv64-BN-ReLU, MaxPool, Dropout, Flatten, Dense128-BN-ReLU, Dropout."""
    return [
        layers.Conv2D(32, 3, dtype=dtype), *maybe_batchnorm(), layers.ReLU(dtype=dtype),
        layers.Conv2D(64, 3, dtype=dtype), *maybe_batchnorm(), layers.ReLU(dtype=dtype),
        layers.MaxPooling2D(2, dtype=dtype),
        layers.Dropout(conv_dropout, dtype=dtype),
        layers.Flatten(dtype=dtype),
        layers.Dense(128, dtype=dtype), *maybe_batchnorm(), layers.ReLU(dtype=dtype),
        layers.Dropout(dense_dropout, dtype=dtype),
    ]


def deep_cnn_layers(maybe_batchnorm, conv_dropout, dense_dropout, dtype):
    """The 730,602-parameter network of the published RMSprop recipe (one BN layer)."""
    def conv(filters, padding="valid"):
        return layers.Conv2D(filters, 3, padding=padding, activation="relu", dtype=dtype)

    return [
        conv(32), conv(32), layers.MaxPooling2D(2, dtype=dtype),
        layers.Dropout(conv_dropout, dtype=dtype),
        conv(64, "same"), conv(64, "same"), layers.MaxPooling2D(2, dtype=dtype),
        layers.Dropout(conv_dropout, dtype=dtype),
        conv(128, "same"), layers.Dropout(conv_dropout, dtype=dtype),
        layers.Flatten(dtype=dtype),
        layers.Dense(128, activation="relu", dtype=dtype), *maybe_batchnorm(),
        layers.Dropout(dense_dropout, dtype=dtype),
    ]


def mlp_layers(maybe_batchnorm, conv_dropout, dense_dropout, dtype):
    """The dense baseline: Flatten, Dense512-ReLU (no batch norm or dropout)."""
    return [layers.Flatten(dtype=dtype), layers.Dense(512, activation="relu", dtype=dtype)]


OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "rmsprop": keras.optimizers.RMSprop,
    "sgd": keras.optimizers.SGD,
}


def compile_model(model, optimizer="adam", learning_rate=None):
    """Sparse categorical cross-entropy and accuracy; learning_rate None is Keras' default."""
    options = {} if learning_rate is None else {"learning_rate": learning_rate}
    optimizer = OPTIMIZERS[optimizer](**options)
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

AUGMENTATION_ENGINES = ("layers", "imagedatagenerator")


class RandomAffine(layers.Layer):
    """ImageDataGenerator's random rotation, zoom and shift as one Keras preprocessing layer.

    Keras' RandomRotation, RandomZoom and RandomTranslation layers would resample each image
    three times, blurring it a little each time (measured: test loss 0.030 against 0.023 after
    6 epochs); this layer composes the three into one affine transform and resamples once, as
    ImageDataGenerator does, at half the cost. Ranges have ImageDataGenerator's meaning:
    degrees, a zoom factor in [1 - z, 1 + z] drawn for height and width independently, and
    shifts as fractions of the image size; the nearest edge pixel fills the corners.
    """

    def __init__(self, rotation_range=10.0, zoom_range=0.1, shift_range=0.1, seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.rotation_range, self.zoom_range, self.shift_range = (
            rotation_range, zoom_range, shift_range)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        batch = keras.ops.shape(images)[0]
        height, width = images.shape[1], images.shape[2]

        def uniform(limit, centre=0.0):
            return keras.random.uniform((batch,), centre - limit, centre + limit,
                                        seed=self.seed_generator)

        angle = uniform(self.rotation_range) * (math.pi / 180)
        zoom_x, zoom_y = uniform(self.zoom_range, 1.0), uniform(self.zoom_range, 1.0)
        shift_x, shift_y = uniform(self.shift_range) * width, uniform(self.shift_range) * height
        # The transform maps each output pixel to the input point it samples:
        # input = centre + rotation @ zoom @ (output - centre) + shift.
        cos, sin = keras.ops.cos(angle), keras.ops.sin(angle)
        a0, a1, b0, b1 = cos * zoom_x, -sin * zoom_y, sin * zoom_x, cos * zoom_y
        centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
        a2 = centre_x - a0 * centre_x - a1 * centre_y + shift_x
        b2 = centre_y - b0 * centre_x - b1 * centre_y + shift_y
        zeros = keras.ops.zeros_like(a0)
        transforms = keras.ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        return keras.ops.image.affine_transform(images, transforms, interpolation="bilinear",
                                                fill_mode="nearest")

    def get_config(self):
        return {**super().get_config(), "rotation_range": self.rotation_range,
                "zoom_range": self.zoom_range, "shift_range": self.shift_range,
                "seed": self.seed}


def make_augmenter(rotation_range=10, zoom_range=0.1, shift_range=0.1, seed=None):
    """The `layers` engine's augmentation: a RandomAffine layer, applied in the tf.data graph."""
    return RandomAffine(rotation_range, zoom_range, shift_range, seed=seed, name="augmentation")


def make_image_data_generator(rotation_range=10, zoom_range=0.1, shift_range=0.1):
    """Keras' literal ImageDataGenerator with the same parameters (a Python loop over images)."""
    from tensorflow.keras.preprocessing.image import ImageDataGenerator

    return ImageDataGenerator(rotation_range=rotation_range, zoom_range=zoom_range,
                              width_shift_range=shift_range, height_shift_range=shift_range,
                              fill_mode="nearest")


def make_train_dataset(x, y, batch_size, augmenter=None, seed=None):
    """Shuffled batches, augmented in the tf.data graph in parallel with training."""
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    if augmenter is not None:
        dataset = dataset.map(lambda images, labels: (augmenter(images, training=True), labels),
                              num_parallel_calls=tf.data.AUTOTUNE,
                              deterministic=seed is not None)
    return shard_by_data(dataset.prefetch(tf.data.AUTOTUNE))


def make_eval_dataset(x, y):
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(EVAL_BATCH_SIZE)
    return shard_by_data(dataset.prefetch(tf.data.AUTOTUNE))


def shard_by_data(dataset):
    """Under tf.distribute, workers split each batch (the images are in memory, not files)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


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

class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` to each epoch's logs (and so to the progress bar and CSV log)."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = round(time.perf_counter() - self._start, 3)


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: nothing worth saving was learned."""


class Interrupted(UserError):
    """Ctrl-C or SIGTERM during training (exit status 130, as a shell reports Ctrl-C)."""

    exit_code = 130


def validation_size(n_images, validation_split):
    """How many of n_images the validation split holds out (at least one when asked for)."""
    if validation_split == 0:
        return 0
    n_val = max(1, round(n_images * validation_split))
    if n_val >= n_images:
        raise UsageError(f"{n_images:,} training images are too few for --validation-split "
                         f"{validation_split}: use more images or a smaller split")
    return n_val


def split_validation(x, y, validation_split):
    """Hold out the last `validation_split` of the training images, as Keras' fit does."""
    n_val = validation_size(len(x), validation_split)
    if n_val == 0:
        return (x, y), None
    return (x[:-n_val], y[:-n_val]), (x[-n_val:], y[-n_val:])


MIN_LEARNING_RATE = 1e-5


def anneal_last_epochs(epochs, factor=0.5, min_lr=MIN_LEARNING_RATE):
    """Halve the learning rate at the start of each of the last third of the epochs.

    This comes on top of ReduceLROnPlateau's cuts, which follow the noise of the validation
    loss and may come late or never: in three runs of the default command without it, the
    first cut came after epoch 5, 7 and 8, and the later it came the lower the test accuracy
    (99.49%, 99.38%, 99.32%); without a validation split the training loss, which keeps
    falling, rarely triggers one. With it every run ends its training at a small rate.
    """
    first = epochs - round(epochs / 3)
    return keras.callbacks.LearningRateScheduler(
        lambda epoch, rate: max(rate * factor, min(rate, min_lr)) if epoch >= first else rate)


def train(model, x_train, y_train, *, epochs=15, batch_size=32, validation_split=0.1,
          augment=True, engine="layers", rotation_range=10, zoom_range=0.1, shift_range=0.1,
          seed=None, work_dir=None, verbose=None, callbacks=(), lr_decay=None):
    """Fit a compiled model; return the per-epoch history as a list of dicts.

    The validation split drives ReduceLROnPlateau (halve the rate after one epoch without
    a lower validation loss) and each of the last third of the epochs halves it once more.
    `work_dir` keeps a BackupAndRestore checkpoint and a CSV log of the epochs, so that calling
    train again with the same work_dir resumes an interrupted run.
    """
    (x_fit, y_fit), validation = split_validation(x_train, y_train, validation_split)
    if verbose is None:  # a live progress bar on a terminal, a line per epoch in a log file
        verbose = 1 if sys.stdout.isatty() else 2
    if augment and engine == "imagedatagenerator":
        generator = make_image_data_generator(rotation_range, zoom_range, shift_range)
        train_data = generator.flow(x_fit, y_fit, batch_size=batch_size, shuffle=True, seed=seed)
    else:
        augmenter = make_augmenter(rotation_range, zoom_range, shift_range, seed) if augment else None
        train_data = make_train_dataset(x_fit, y_fit, batch_size, augmenter, seed)
    validation_data = make_eval_dataset(*validation) if validation else None

    temporary = work_dir is None
    work_dir = Path(tempfile.mkdtemp(prefix="mnist-train-") if temporary else work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / "training_log.csv"
    standard_callbacks = [
        EpochTimer(),
        # Before ReduceLROnPlateau, which logs the rate each epoch ran at before it cuts it.
        anneal_last_epochs(epochs) if not lr_decay else keras.callbacks.LearningRateScheduler(
            lambda epoch, rate: max(rate * lr_decay, min(rate, MIN_LEARNING_RATE)) if epoch else rate),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss" if validation else "loss",
                                          factor=0.5, patience=1, min_lr=MIN_LEARNING_RATE),
        keras.callbacks.TerminateOnNaN(),
        # Two alternating checkpoints: a signal during a save cannot spoil the last good one.
        keras.callbacks.BackupAndRestore(str(work_dir / "backup"), double_checkpoint=True),
        keras.callbacks.CSVLogger(str(log_path), append=True),
    ]
    try:
        model.fit(train_data, epochs=epochs, validation_data=validation_data, shuffle=False,
                  verbose=verbose,
                  callbacks=standard_callbacks + list(callbacks))
        history = read_training_log(log_path)
    finally:
        if temporary:
            shutil.rmtree(work_dir, ignore_errors=True)
    diverged = [row["epoch"] for row in history if not math.isfinite(row.get("loss", 0.0))]
    if diverged:
        raise TrainingDiverged(f"training diverged (the loss stopped being a number in epoch "
                               f"{diverged[0]}): try a smaller --learning-rate; the saved "
                               "model was not changed")
    return history


def read_training_log(path):
    """The CSVLogger rows as dicts of numbers, one per epoch (numbered from 1), last row wins.
    Values CSVLogger had none for ("NA": the val_ columns of a run without validation) are left
    out."""
    epochs = {}
    if path.exists():
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                values = {key: float(value) for key, value in row.items()
                          if value not in ("", None, "NA")}
                epoch = int(values.pop("epoch")) + 1
                epochs[epoch] = {"epoch": epoch, **values}
    return [epochs[epoch] for epoch in sorted(epochs)]


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------

def evaluate(model, x_test, y_test):
    """Test loss, accuracy, per-digit accuracy and confusion matrix of a model."""
    return score(model.predict(x_test, batch_size=EVAL_BATCH_SIZE, verbose=0), y_test)


def score(probabilities, labels):
    """The metrics of predicted probabilities (N, 10) against the true labels (N,)."""
    predicted = probabilities.argmax(axis=1)
    loss = float(np.mean(keras.losses.sparse_categorical_crossentropy(labels, probabilities)))
    confusion = tf.math.confusion_matrix(labels, predicted, num_classes=NUM_CLASSES).numpy()
    per_digit = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
    return {
        "test_loss": loss,
        "test_accuracy": float(np.mean(predicted == labels)),
        "per_digit_accuracy": {str(d): float(a) for d, a in enumerate(per_digit)},
        "confusion_matrix": confusion.tolist(),
    }


# Reports are drawn with NumPy and encoded with tf.io, so no plotting library is needed.
# Digits for labels come from a 3x5 pixel font: each string is a glyph's rows, top to bottom.
DIGIT_FONT = ("111101101101111", "010110010010111", "111001111100111", "111001111001111",
              "101101111001001", "111100111001111", "111100111101111", "111001001001001",
              "111101111101111", "111101111001111")
GREEN, RED, BLACK, WHITE = (0, 150, 0), (220, 0, 0), (0, 0, 0), (255, 255, 255)


def draw_number(canvas, number, top, left, colour, scale=2):
    """Write the decimal digits of `number` into an RGB uint8 canvas."""
    for i, character in enumerate(str(number)):
        glyph = np.array([int(bit) for bit in DIGIT_FONT[int(character)]]).reshape(5, 3)
        mask = np.kron(glyph, np.ones((scale, scale), dtype=int)) > 0
        x = left + i * 4 * scale
        canvas[top:top + 5 * scale, x:x + 3 * scale][mask] = colour


def confusion_matrix_image(confusion, cell=40, margin=24):
    """Rows: true digit; columns: predicted. Correct counts shaded blue, mistakes red."""
    confusion = np.asarray(confusion)
    size = margin + NUM_CLASSES * cell
    canvas = np.full((size, size, 3), 255, np.uint8)
    worst_mistake = max(1, (confusion - np.diag(np.diag(confusion))).max())
    for true in range(NUM_CLASSES):
        draw_number(canvas, true, margin + true * cell + cell // 2 - 5, 6, BLACK)
        draw_number(canvas, true, 7, margin + true * cell + cell // 2 - 3, BLACK)
        for predicted in range(NUM_CLASSES):
            count = int(confusion[true, predicted])
            if true == predicted:
                strength = count / max(1, confusion[true].sum())
                colour = (255 * (1 - 0.75 * strength), 255 * (1 - 0.45 * strength), 255)
            else:
                strength = np.log1p(count) / np.log1p(worst_mistake)
                colour = (255, 255 * (1 - 0.8 * strength), 255 * (1 - 0.8 * strength))
            top, left = margin + true * cell, margin + predicted * cell
            canvas[top + 1:top + cell, left + 1:left + cell] = np.array(colour, np.uint8)
            if count:
                text = str(count)
                draw_number(canvas, count, top + cell // 2 - 5,
                            left + (cell - (len(text) * 8 - 2)) // 2,
                            WHITE if strength > 0.6 else BLACK)
    return canvas


def misclassified_image(images, labels, probabilities, columns=10, max_images=100, scale=2):
    """The most confident mistakes, most confident first: the true digit in green at the top
    left of each tile, the predicted one in red at the top right."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:max_images]
    tile = 28 * scale + 4
    rows = max(1, math.ceil(len(wrong) / columns))
    canvas = np.full((rows * tile, columns * tile, 3), 255, np.uint8)
    for position, index in enumerate(wrong):
        top, left = (position // columns) * tile + 2, (position % columns) * tile + 2
        digit = np.kron(images[index][..., 0], np.ones((scale, scale)))
        canvas[top:top + 28 * scale, left:left + 28 * scale] = \
            np.round(digit * 255).astype(np.uint8)[..., np.newaxis]
        draw_number(canvas, int(labels[index]), top + 2, left + 2, GREEN)
        draw_number(canvas, int(predicted[index]), top + 2, left + 28 * scale - 8, RED)
    return canvas


def write_png(path, canvas):
    tf.io.write_file(str(path), tf.io.encode_png(canvas))


def make_reports(x_test, y_test, probabilities, results):
    """The report pictures a model directory holds: {file name: RGB uint8 array}."""
    return {"confusion_matrix.png": confusion_matrix_image(results["confusion_matrix"]),
            "misclassified.png": misclassified_image(x_test, y_test, probabilities)}


def write_reports(folder, reports):
    """Write each picture beside the model, replacing the old one only once it is complete."""
    for name, canvas in reports.items():
        partial = Path(folder) / f".{name}.partial"
        write_png(partial, canvas)
        os.replace(partial, Path(folder) / name)


# ---------------------------------------------------------------------------------------------
# Saving and loading
# ---------------------------------------------------------------------------------------------

def is_model_dir(path):
    return (Path(path) / "model.keras").is_file()


def check_model_dir(model_dir):
    """Fail now, not after training, when the model directory cannot be (re)written."""
    path = Path(model_dir)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--model-dir {path} is a file, not a directory: choose another path")
    if path.is_dir() and any(path.iterdir()) and not is_model_dir(path):
        raise UsageError(f"--model-dir {path} holds files that are not a model of this "
                         "program; refusing to replace them: choose another --model-dir")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.rmdir(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as error:
        raise UsageError(f"cannot write the model directory {path} ({error.strerror}): "
                         "choose a writable --model-dir") from None


def saveable_copy(model, build_options):
    """The trained weights in a float32 model of Keras' standard layers, which any script
    loads without this one and which runs fast on any machine."""
    copy = build_model(**{**build_options, "dtype": "float32", "fused_batchnorm": False})
    copy.set_weights(model.get_weights())
    optimizer = model.optimizer  # without the loss scaling that float16 training needed
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    copy.compile(optimizer=optimizer.from_config(optimizer.get_config()), loss=model.loss,
                 metrics=["accuracy"])
    # Carry the optimizer's state over too (its step count and learning rate among it), so
    # the saved model loads without warnings and can be trained further where it stopped.
    copy.optimizer.build(copy.trainable_variables)
    for target, source in zip(copy.optimizer.variables, optimizer.variables):
        target.assign(source)
    return copy


def save_model_dir(model, model_dir, metadata, reports=None):
    """Write model.keras, saved_model/, metadata.json and the report pictures into a temporary
    sibling directory, then swap it into place: an interrupted or failed save leaves the
    previous model intact."""
    model_dir = Path(model_dir)
    if model.optimizer is not None and not model.optimizer.built:
        # An optimizer saved before its first step makes load_model warn that it skipped it.
        model.optimizer.build(model.trainable_variables)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}.new-", dir=model_dir.parent))
    try:
        model.save(staging / "model.keras")
        model.export(str(staging / "saved_model"), verbose=False)
        (staging / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
        for name, canvas in (reports or {}).items():
            write_png(staging / name, canvas)
        replace_directory(staging, model_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def replace_directory(new, target):
    if not target.exists():
        os.rename(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rename(target, old / target.name)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old / target.name, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def load_model(model_dir=DEFAULT_MODEL_DIR):
    """Load a saved model.keras (plain keras.models.load_model works as well)."""
    path = Path(model_dir)
    if not path.is_dir():
        raise UsageError(f"no model directory at {path}: train one first "
                         "(python mnist_digit_recognition.py) or pass --model-dir")
    if not is_model_dir(path):
        raise UsageError(f"{path} holds no model (no model.keras): train one first "
                         "or pass the --model-dir of a trained model")
    try:
        return keras.models.load_model(path / "model.keras")
    except Exception as error:
        raise UserError(f"{path / 'model.keras'} cannot be loaded ({error}): "
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
# Prediction on arrays and image files
# ---------------------------------------------------------------------------------------------

def read_image(path):
    """Decode a PNG, JPEG, BMP or GIF file into MNIST's form: (28, 28) float32 in [0, 1]."""
    try:
        image = tf.io.decode_image(tf.io.read_file(str(path)), expand_animations=False)
    except (tf.errors.OpError, ValueError) as error:
        reason = "no such file" if isinstance(error, tf.errors.NotFoundError) else \
            "not a PNG, JPEG, BMP or GIF image"
        raise UserError(f"{path}: {reason}") from None
    try:
        return to_mnist_form(image.numpy())
    except ValueError as error:
        raise UserError(f"{path}: {error}") from None


def to_mnist_form(image):
    """A picture of one digit, any size, colour or grey, either polarity -> MNIST's 28x28.

    As MNIST was made: light ink on black, cropped to the ink, scaled to fit a 20x20 box
    keeping its aspect ratio, then placed in 28x28 with its centre of mass at the centre.
    """
    image = image.astype(np.float32) / 255.0
    if image.ndim == 2:
        image = image[..., np.newaxis]
    if image.shape[-1] in (2, 4):  # composite a transparent background onto white
        alpha = image[..., -1:]
        image = image[..., :-1] * alpha + (1.0 - alpha)
    grey = tf.image.rgb_to_grayscale(image).numpy()[..., 0] if image.shape[-1] == 3 else image[..., 0]
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    background = float(np.median(border))
    if background > 0.5:  # dark ink on a light background: invert to MNIST's polarity
        grey, background = 1.0 - grey, 1.0 - background
    ink = np.clip(grey - background, 0.0, None)
    if ink.max() < 0.1:
        raise ValueError("no digit found (the image is blank)")
    ink /= ink.max()
    rows, cols = np.nonzero(ink > 0.1)
    ink = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    scale = 20.0 / max(ink.shape)
    size = (max(1, round(ink.shape[0] * scale)), max(1, round(ink.shape[1] * scale)))
    digit = tf.image.resize(ink[..., np.newaxis], size, antialias=True).numpy()[..., 0]
    digit = np.clip(digit, 0.0, 1.0)
    centre_y = (digit.sum(axis=1) * np.arange(size[0])).sum() / digit.sum()
    centre_x = (digit.sum(axis=0) * np.arange(size[1])).sum() / digit.sum()
    # MNIST's digits have their centre of mass at pixel (14, 14), not at the exact middle 13.5.
    top = int(np.clip(round(14 - centre_y), 0, 28 - size[0]))
    left = int(np.clip(round(14 - centre_x), 0, 28 - size[1]))
    canvas = np.zeros((28, 28), np.float32)
    canvas[top:top + size[0], left:left + size[1]] = digit
    return canvas


def prepare_images(images):
    """File paths or arrays ((28, 28), (N, 28, 28) or (N, 28, 28, 1); uint8 0-255 or float
    0-1) -> the network's (N, 28, 28, 1) float32 input."""
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    if isinstance(images, (list, tuple)) and images and isinstance(images[0], (str, os.PathLike)):
        return np.stack([read_image(path) for path in images])[..., np.newaxis]
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


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (and exit status 2), without the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text):
    value = int_value(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text!r}")
    return value


def non_negative_int(text):
    value = int_value(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, not {text!r}")
    return value


def int_value(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None


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
            raise argparse.ArgumentTypeError(f"must be in {left}{low}, {high}{right}, not {text!r}")
        return value
    return parse


def build_train_parser(prog):
    parser = ArgumentParser(
        prog=prog,
        description="Train a digit recogniser on MNIST, evaluate it on the test set and save it. "
                    "Other actions: 'predict FILE...' classifies image files, 'evaluate' scores "
                    "a saved model (each has its own --help).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    model = parser.add_argument_group("model")
    model.add_argument("--arch", choices=ARCHITECTURES, default="cnn", help="model family")
    model.add_argument("--no-batchnorm", dest="batchnorm", action="store_false",
                       help="leave out the BatchNormalization layers")
    model.add_argument("--compare-batchnorm", action="store_true",
                       help="train with and without batch norm (same seed and data), keep both "
                            "(the second in MODEL_DIR-no-batchnorm) and print them side by side")
    model.add_argument("--conv-dropout", type=number_in(0, 1), default=None,
                       help="dropout after the convolutional block (0 disables)")
    model.add_argument("--dense-dropout", type=number_in(0, 1), default=None,
                       help="dropout before the output layer (0 disables)")
    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=positive_int, default=15)
    training.add_argument("--batch-size", type=positive_int, default=32,
                          help="the global batch: under --distribute, replicas and workers "
                               "split each batch between them")
    training.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam")
    training.add_argument("--learning-rate", type=number_in(0, 1e6, low_included=False),
                          default=None, help="initial learning rate (default: Keras' default "
                          "for the optimizer, 0.001 for adam and rmsprop)")
    training.add_argument("--validation-split", type=number_in(0, 1), default=0.1,
                          help="fraction of the training images held out to drive "
                               "ReduceLROnPlateau (the test set is used only for the final "
                               "evaluation); 0 trains on all of them and lets the plateau "
                               "watch the training loss")
    training.add_argument("--seed", type=non_negative_int, default=None,
                          help="seed for weights, shuffling and augmentation; on CPU the same "
                               "seed gives the same metrics")
    training.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction,
                          default=None, help="compute in bfloat16/float16 with float32 weights "
                          "(default: where the hardware has fast support for it)")
    training.add_argument("--distribute", choices=DISTRIBUTE_MODES, default="auto",
                          help="auto: MirroredStrategy on more than one GPU, and "
                               "MultiWorkerMirroredStrategy when TF_CONFIG describes a cluster; "
                               "mirrored: MirroredStrategy over every GPU (or the CPU's logical "
                               "devices); none: one device")
    training.add_argument("--tensorboard", metavar="DIR", default=None,
                          help="log training curves for TensorBoard into DIR")
    training.add_argument("--resume", action="store_true",
                          help="continue an interrupted run (same command) from its last "
                               "finished epoch")
    augmentation = parser.add_argument_group("augmentation (ImageDataGenerator's meaning)")
    augmentation.add_argument("--no-augmentation", dest="augment", action="store_false",
                              help="train on the images as they are")
    augmentation.add_argument("--rotation-range", type=number_in(0, 180, high_included=True),
                              default=10.0, help="random rotation, degrees")
    augmentation.add_argument("--zoom-range", type=number_in(0, 1), default=0.1,
                              help="random zoom in [1-F, 1+F]")
    augmentation.add_argument("--shift-range", type=number_in(0, 1), default=0.1,
                              help="random shift, fraction of width and height")
    augmentation.add_argument("--augmentation-engine", choices=AUGMENTATION_ENGINES,
                              default="layers", help="'layers': Keras preprocessing layers in "
                              "the tf.data graph; 'imagedatagenerator': Keras' literal "
                              "ImageDataGenerator")
    add_data_and_model_dir_flags(parser)
    parser.add_argument("--train-size", type=positive_int, default=None,
                        help="use only the first N training images (quick trials)")
    return parser


def add_data_and_model_dir_flags(parser):
    parser.add_argument("--data", default=default_data_path(),
                        help="a Keras-layout mnist.npz or a folder with the four IDX files "
                             "(default: $MNIST_DATA, else Keras' download and cache)")
    parser.add_argument("--model-dir", default=DEFAULT_MODEL_DIR,
                        help="the model directory to write or read")


def build_evaluate_parser(prog):
    parser = ArgumentParser(prog=prog, description="Test loss and accuracy of a saved model.",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_data_and_model_dir_flags(parser)
    return parser


def build_predict_parser(prog):
    parser = ArgumentParser(prog=prog, description="Classify digit images (PNG, JPEG, BMP, GIF; "
                            "any size, colour or grey, either polarity).",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per file instead of text")
    parser.add_argument("--model-dir", default=DEFAULT_MODEL_DIR, help="the model to use")
    return parser


def training_settings(args):
    """The flags that define a training run (what metadata records and --resume must match)."""
    settings = {key: value for key, value in vars(args).items()
                if key not in ("resume", "tensorboard", "compare_batchnorm")}
    settings["data"] = str(args.data) if args.data else None
    return settings


def build_options(args, dtype=None):
    return {"arch": args.arch, "batchnorm": args.batchnorm, "conv_dropout": args.conv_dropout,
            "dense_dropout": args.dense_dropout, "dtype": dtype}


def prepare_work_dir(args, worker=None):
    """The folder of an in-progress run, `<model-dir>.partial`: checkpoint, log, settings.
    Each other worker of a cluster keeps its own, `<model-dir>.worker-N.partial`."""
    suffix = f".{worker.replace(' ', '-')}.partial" if worker else ".partial"
    work_dir = Path(f"{Path(args.model_dir)}{suffix}")
    settings_file = work_dir / "settings.json"
    settings = training_settings(args)
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


def extra_callbacks(args, chief=True):
    if args.tensorboard and chief:
        return [keras.callbacks.TensorBoard(log_dir=args.tensorboard)]
    return []


def raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def run_training(args, strategy):
    """Train, evaluate and save as the flags say; return the metadata (None on a worker that
    is not the chief)."""
    started = time.perf_counter()
    check_model_dir(args.model_dir)
    arrays = read_mnist_arrays(args.data)
    x_train, y_train = normalize_images(arrays["x_train"]), arrays["y_train"]
    x_test, y_test = normalize_images(arrays["x_test"]), arrays["y_test"]
    if args.train_size:
        if args.train_size > len(x_train):
            raise UsageError(f"--train-size {args.train_size:,} is more than the "
                             f"{len(x_train):,} training images")
        x_train, y_train = x_train[:args.train_size], y_train[:args.train_size]
    n_val = validation_size(len(x_train), args.validation_split)
    chief = is_chief(strategy)
    work_dir = prepare_work_dir(args, worker=None if chief else worker_name(strategy))

    if args.seed is not None:
        keras.utils.set_random_seed(args.seed)
        tf.config.experimental.enable_op_determinism()
    policy = choose_precision(args.mixed_precision)
    with strategy.scope():
        model = compile_model(build_model(**build_options(args, policy), fused_batchnorm=True),
                              args.optimizer, args.learning_rate)
    print(f"Training {args.arch} ({model.count_params():,} parameters) on "
          f"{len(x_train) - n_val:,} images, validating on {n_val:,}; {describe_device()}, "
          f"{policy}, {describe_distribution(strategy)}", flush=True)

    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    try:
        history = train(model, x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        validation_split=args.validation_split, augment=args.augment,
                        engine=args.augmentation_engine, rotation_range=args.rotation_range,
                        zoom_range=args.zoom_range, shift_range=args.shift_range,
                        seed=args.seed, work_dir=work_dir,
                        callbacks=extra_callbacks(args, chief))
    except KeyboardInterrupt:
        done = len(read_training_log(work_dir / "training_log.csv"))
        raise Interrupted(f"interrupted after {done} finished epoch(s): {args.model_dir} is "
                          "unchanged; run the same command with --resume to continue") from None
    except TrainingDiverged:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    if not chief:  # the chief evaluates and writes the model directory
        shutil.rmtree(work_dir, ignore_errors=True)
        print(f"{worker_name(strategy)}: training finished; the chief writes {args.model_dir}")
        return None

    model = saveable_copy(model, build_options(args))
    probabilities = model.predict(x_test, batch_size=EVAL_BATCH_SIZE, verbose=0)
    results = score(probabilities, y_test)
    wall_seconds = time.perf_counter() - started
    metadata = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "settings": training_settings(args),
        "model": {**build_options(args), "dtype": "float32", "parameters": model.count_params()},
        "precision": policy,
        "device": describe_device(),
        "distribution": describe_distribution(strategy),
        **results,
        "history": history,
        "data": {"source": str(args.data) if args.data else "keras download",
                 "sha256": mnist_checksum(arrays), "train_images": len(x_train) - n_val,
                 "validation_images": n_val, "test_images": len(x_test)},
        "versions": library_versions(),
        "wall_seconds": round(wall_seconds, 1),
    }
    save_model_dir(model, args.model_dir, metadata,
                   make_reports(x_test, y_test, probabilities, results))
    shutil.rmtree(work_dir, ignore_errors=True)
    print_summary(metadata, args.model_dir)
    return metadata


def compare_batchnorm(args, strategy):
    """Train the network with and without batch norm (same seed, data and flags), keep both
    model directories, and print one side-by-side table."""
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(3), "big")
    variants = {"batch norm": vars(args) | {"batchnorm": True},
                "no batch norm": vars(args) | {"batchnorm": False,
                                               "model_dir": f"{args.model_dir}-no-batchnorm"}}
    runs = {name: argparse.Namespace(**settings | {"seed": seed, "compare_batchnorm": False})
            for name, settings in variants.items()}
    for run in runs.values():  # both directories are checked before either is trained
        check_model_dir(run.model_dir)
    results = {name: finished_run(run) or run_training(run, strategy)
               for name, run in runs.items()}
    if not is_chief(strategy):
        return None
    print(f"\nBatch norm compared (seed {seed}):")
    header = ("", "parameters", "test accuracy", "test loss", "wall time", "model directory")
    rows = [(name, f"{m['model']['parameters']:,}", f"{m['test_accuracy']:.2%}",
             f"{m['test_loss']:.4f}", format_duration(m["wall_seconds"]), runs[name].model_dir)
            for name, m in results.items()]
    print_columns([header, *rows])
    return results


def finished_run(args):
    """With --resume, the metadata of a variant that already finished with these settings."""
    if not args.resume or Path(f"{args.model_dir}.partial").exists():
        return None
    metadata = read_metadata(args.model_dir)
    return metadata if metadata.get("settings") == training_settings(args) else None


def format_duration(seconds):
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def print_summary(metadata, model_dir):
    settings, model = metadata["settings"], metadata["model"]
    augmentation = (f"{settings['augmentation_engine']} (rotation {settings['rotation_range']:g} "
                    f"deg, zoom {settings['zoom_range']:g}, shift {settings['shift_range']:g})"
                    if settings["augment"] else "none")
    learning_rate = settings["learning_rate"] or "default"
    rows = [
        ("model", f"{model['arch']}, batch norm {'on' if model['batchnorm'] else 'off'}, "
                  f"dropout {model['conv_dropout']:g}/{model['dense_dropout']:g}"),
        ("parameters", f"{model['parameters']:,}"),
        ("training", f"{len(metadata['history'])} epochs, batch {settings['batch_size']}, "
                     f"{settings['optimizer']} (learning rate {learning_rate})"),
        ("augmentation", augmentation),
        ("data", f"{metadata['data']['train_images']:,} train, "
                 f"{metadata['data']['validation_images']:,} validation, "
                 f"{metadata['data']['test_images']:,} test ({metadata['data']['source']})"),
        ("device", f"{metadata['device']}, {metadata['precision']}, "
                   f"{metadata['distribution']}"),
        ("test loss", f"{metadata['test_loss']:.4f}"),
        ("test accuracy", f"{metadata['test_accuracy']:.2%}"),
        ("wall time", format_duration(metadata["wall_seconds"])),
        ("saved to", f"{model_dir}/"),
    ]
    print_table(rows)


def print_columns(rows):
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(f"{cell:<{w}}" if i == 0 else f"{cell:>{w}}" if i < len(row) - 1
                        else str(cell) for i, (cell, w) in enumerate(zip(row, widths))))


def print_table(rows):
    width = max(len(name) for name, _ in rows)
    line = "-" * (width + 2 + max(len(value) for _, value in rows))
    print(line)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(line, flush=True)


def run_train(args):
    if args.compare_batchnorm and args.arch == "mlp":
        raise UsageError("--compare-batchnorm: the mlp has no batch norm layers to compare; "
                         "use --arch cnn or deep-cnn")
    if wants_cluster(args.distribute):
        check_tf_config(os.environ["TF_CONFIG"])
        if args.augment and args.augmentation_engine != "layers":
            raise UsageError("--augmentation-engine imagedatagenerator runs in one Python "
                             "process; use the layers engine to train on several workers")
        if args.seed is None:
            raise UsageError("several workers need the same --seed N on each (they split the "
                             "batches of one shuffled order)")
    strategy = make_strategy(args.distribute)  # created once: a cluster allows no second one
    if args.compare_batchnorm:
        compare_batchnorm(args, strategy)
    else:
        run_training(args, strategy)
    return 0


def run_evaluate(args):
    model = load_model(args.model_dir)
    arrays = read_mnist_arrays(args.data)
    x_test, y_test = normalize_images(arrays["x_test"]), arrays["y_test"]
    probabilities = model.predict(x_test, batch_size=EVAL_BATCH_SIZE, verbose=0)
    results = score(probabilities, y_test)
    write_reports(args.model_dir, make_reports(x_test, y_test, probabilities, results))
    rows = [("model", str(args.model_dir)),
            ("test loss", f"{results['test_loss']:.4f}"),
            ("test accuracy", f"{results['test_accuracy']:.2%}")]
    rows += [(f"digit {digit}", f"{accuracy:.2%}")
             for digit, accuracy in results["per_digit_accuracy"].items()]
    rows.append(("reports", f"{Path(args.model_dir) / 'confusion_matrix.png'}, misclassified.png"))
    print_table(rows)
    return 0


def run_predict(args):
    model = load_model(args.model_dir)
    failures = 0
    for path in args.files:
        try:
            image = read_image(path)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            failures += 1
            continue
        digits, probabilities = predict(model, image)
        digit, probability = int(digits[0]), float(probabilities[0, digits[0]])
        if args.json:
            print(json.dumps({"file": path, "digit": digit, "probability": round(probability, 6),
                              "probabilities": [round(float(p), 6) for p in probabilities[0]]}))
        else:
            print(f"{path}: {digit} ({probability:.1%})")
    return 1 if failures else 0


ACTIONS = {
    "train": (build_train_parser, run_train),
    "evaluate": (build_evaluate_parser, run_evaluate),
    "predict": (build_predict_parser, run_predict),
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    action = argv.pop(0) if argv and argv[0] in ACTIONS else "train"
    build_parser, run = ACTIONS[action]
    prog = "mnist_digit_recognition.py" + ("" if action == "train" else f" {action}")
    args = build_parser(prog).parse_args(argv)
    try:
        return run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
