"""model.tflite gives the same digits and probabilities as model.keras, in a fresh process."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

SHIPPED = ROOT / "mnist_digit_recognition_model"

COMPARE = """
import json, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
import mnist_digit_recognition as mdr

model_dir, data = sys.argv[1], sys.argv[2]
(_, _), (x_test, y_test) = mdr.load_mnist(data)
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


def test_tflite_matches_keras_on_test_images(data_dir):
    if not (SHIPPED / "model.tflite").is_file():
        pytest.skip(f"the shipped model has no model.tflite ({SHIPPED})")
    pytest.importorskip("ai_edge_litert", reason="needs ai-edge-litert (requirements-dev.txt)")
    result = subprocess.run([sys.executable, "-c", COMPARE, str(SHIPPED), str(data_dir)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    print(figures)
    assert figures["same_digits"] == figures["images"]
    assert figures["max_difference"] < 1e-4
