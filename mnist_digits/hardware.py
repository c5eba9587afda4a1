"""Devices, precision and distribution: what this machine trains on and how fast. The
mixed-precision policy its hardware is fast at, TensorFlow's fused batch-norm kernel,
tf.distribute strategies (one device, several GPUs, several workers) and the workaround Keras 3
needs under MultiWorkerMirroredStrategy."""

import functools
import json
import os
import platform
from pathlib import Path

import numpy as np

from .errors import UsageError
from .lazy import keras, tf


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


def any_worker(strategy, flag):
    """Whether the flag is true on any worker of the cluster (a sum across it), on each."""
    return float(summed_over_workers(strategy)(tf.constant(float(flag)))) > 0


@functools.cache
def summed_over_workers(strategy):
    """A value's sum over the cluster's workers, as a tf.function (eagerly, a collective op
    is slow and TensorFlow warns each time)."""
    @tf.function
    def summed(value):
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: value), axis=None)
    return summed


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


def shard_by_data(dataset):
    """Under tf.distribute, workers split each batch (the images are in memory, not files)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def library_versions():
    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__}
