"""The shipped model.tflite gives the same digits as model.keras, and probabilities within
README's bound (PROBABILITY_TOLERANCE), in a fresh process; so does the "not a digit" network in
not_a_digit/, with the same decisions at its threshold. (tests/test_cli.py compares the
model.tflite a training run has just written in the same way.)"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import PROBABILITY_TOLERANCE, ROOT, SHIPPED, missing

COMPARE = """
import json, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
import mnist_digit_recognition as mdr

model_dir, data = sys.argv[1], sys.argv[2]
(_, _), (x_test, y_test) = mdr.load_mnist(f"{data}/mnist.npz")
x = np.concatenate([x_test[:1000], 1 - x_test[1000:1200]])  # and 200 that are no MNIST digit
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
    "tflite_accuracy": float(np.mean(tflite_probabilities[:1000].argmax(1) == y_test[:1000])),
    "keras_last_outputs": keras_probabilities[:, -1].tolist(),
    "tflite_last_outputs": tflite_probabilities[:, -1].tolist(),
}))
"""


def compare(folder, data_dir):
    """folder's model.tflite on LiteRT against its model.keras on the first 1,000 test images
    and 200 more inverted, in a fresh process."""
    assert (folder / "model.tflite").is_file(), f"no model.tflite in {folder}"
    if importlib.util.find_spec("ai_edge_litert") is None:
        missing("needs ai-edge-litert (requirements-dev.txt) to run model.tflite")
    result = subprocess.run([sys.executable, "-c", COMPARE, str(folder), str(data_dir)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_tflite_gives_the_digits_of_keras_on_test_images(data_dir):
    compared = compare(SHIPPED, data_dir)
    assert compared["images"] == 1200 and compared["same_digits"] == 1200
    assert compared["tflite_accuracy"] >= 0.99
    assert compared["max_difference"] < PROBABILITY_TOLERANCE, compared  # README's tolerance


def test_the_not_a_digit_networks_tflite_decides_as_its_keras_model(data_dir):
    folder = SHIPPED / "not_a_digit"
    if not (folder / "settings.json").is_file():
        missing(f"the shipped model has no not_a_digit/ ({folder})")
    threshold = json.loads((folder / "settings.json").read_text())["threshold"]
    compared = compare(folder, data_dir)
    assert compared["same_digits"] == 1200 and compared["max_difference"] < PROBABILITY_TOLERANCE
    keras, tflite = (np.array(compared[f"{kind}_last_outputs"]) > threshold
                     for kind in ("keras", "tflite"))
    assert (keras == tflite).all()
    # No test digit is "not a digit"; of the digits inverted (dark on white, not MNIST's form)
    # some are, so both decisions are compared.
    assert not keras[:1000].any() and keras[1000:].any()
