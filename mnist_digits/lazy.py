"""TensorFlow and Keras, imported on first use and quietly: they take seconds to import, and
--help, a mistyped flag and `predict` on LiteRT need neither."""

import contextlib
import importlib
import os
import sys

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
