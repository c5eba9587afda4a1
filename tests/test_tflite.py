"""The shipped model.tflite gives the same digits as model.keras, and probabilities within
README's bound (PROBABILITY_TOLERANCE), in a fresh process. (tests/test_cli.py compares the
model.tflite a training run has just written in the same way.)"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from conftest import PROBABILITY_TOLERANCE, ROOT, SHIPPED, missing

COMPARE = """
import json, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
import mnist_digit_recognition as mdr

model_dir, data = sys.argv[1], sys.argv[2]
(_, _), (x_test, y_test) = mdr.load_mnist(f"{data}/mnist.npz")
x = x_test[:1000]
keras_probabilities = mdr.load_model(model_dir).predict(x, batch_size=500, verbose=0)

interpreter = Interpreter(model_path=f"{model_dir}/model.tflite")
runner = interpreter.get_signature_runner()
(input_name,) = runner.get_input_details()
outputs = [next(iter(runner(**{input_name: image[np.newaxis]}).values()))[0] for image in x]
tflite_probabilities = np.stack(outputs)
print(json.dumps({
    "images": len(x),
    "max_difference": float(np.abs(tflite_probabilities - keras_probabilities).max()),
    "same_digits": int(np.sum(tflite_probabilities.argmax(1) == keras_probabilities.argmax(1))),
    "tflite_accuracy": float(np.mean(tflite_probabilities.argmax(1) == y_test[:1000])),
}))
"""


@pytest.fixture(scope="module")
def compared(data_dir):
    """The shipped model.tflite on LiteRT against its model.keras on the first 1,000 test
    images, in a fresh process."""
    assert (SHIPPED / "model.tflite").is_file(), f"the shipped model has no model.tflite ({SHIPPED})"
    if importlib.util.find_spec("ai_edge_litert") is None:
        missing("needs ai-edge-litert (requirements-dev.txt) to run model.tflite")
    result = subprocess.run([sys.executable, "-c", COMPARE, str(SHIPPED), str(data_dir)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_tflite_gives_the_digits_of_keras_on_test_images(compared):
    assert compared["images"] == 1000 and compared["same_digits"] == 1000, compared
    assert compared["tflite_accuracy"] >= 0.99
    assert compared["max_difference"] < PROBABILITY_TOLERANCE, compared  # README's tolerance
