"""The shipped model.tflite gives the same digits as model.keras, and probabilities within
README's bound (PROBABILITY_TOLERANCE), in a fresh process; so does the "not a digit" network in
not_a_digit/, with the same decisions at its threshold, and the reader of digits that touch in
not_a_digit/reader/, with the same readings. (tests/test_cli.py compares the model.tflite a
training run has just written in the same way.)"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np

from benchmarks import renderings
from conftest import PROBABILITY_TOLERANCE, READER_LOGIT_TOLERANCE, ROOT, SHIPPED, missing
from mnist_digits import pictures, touching
from mnist_digits.classifier import Gate

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
print(json.dumps({"keras": keras_probabilities.tolist(), "tflite": np.stack(outputs).tolist(),
                  "labels": y_test[:1000].tolist()}))
"""


def compare(folder, data_dir):
    """folder's model.tflite on LiteRT and its model.keras, in a fresh process, on the first
    1,000 test images and 200 more inverted (dark on white: no MNIST digit): (Keras'
    probabilities, LiteRT's, the 1,000 labels)."""
    assert (folder / "model.tflite").is_file(), f"no model.tflite in {folder}"
    if importlib.util.find_spec("ai_edge_litert") is None:
        missing("needs ai-edge-litert (requirements-dev.txt) to run model.tflite")
    result = subprocess.run([sys.executable, "-c", COMPARE, str(folder), str(data_dir)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr
    compared = json.loads(result.stdout.strip().splitlines()[-1])
    return np.array(compared["keras"]), np.array(compared["tflite"]), np.array(compared["labels"])


def clear_of(probabilities, margin=PROBABILITY_TOLERANCE):
    """The images whose top two probabilities differ by more than float32's rounding allows:
    on those, two kernels must pick the same class."""
    top_two = np.sort(probabilities, axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0] > 2 * margin


def test_tflite_gives_the_digits_of_keras_on_test_images(data_dir):
    keras, tflite, labels = compare(SHIPPED, data_dir)
    difference = np.abs(tflite - keras).max()
    assert difference < PROBABILITY_TOLERANCE, difference  # README's tolerance
    clear = clear_of(keras)
    assert clear[:1000].all() and clear.sum() >= 1150
    assert (tflite.argmax(1) == keras.argmax(1))[clear].all()
    assert (tflite[:1000].argmax(1) == labels).mean() >= 0.99


def test_the_not_a_digit_networks_tflite_decides_as_its_keras_model(data_dir):
    folder = SHIPPED / "not_a_digit"
    if not (folder / "settings.json").is_file():
        missing(f"the shipped model has no not_a_digit/ ({folder})")
    threshold = json.loads((folder / "settings.json").read_text())["threshold"]
    keras, tflite, _ = compare(folder, data_dir)
    assert np.abs(tflite - keras).max() < PROBABILITY_TOLERANCE
    # "Not a digit": the outputs beyond the ten digits added up, each within the tolerance, so
    # their sum within twice it; clear of the threshold by twice that, as above.
    keras, tflite = Gate.no_digit_score(keras), Gate.no_digit_score(tflite)
    clear = np.abs(keras - threshold) > 2 * (2 * PROBABILITY_TOLERANCE)
    assert clear.sum() >= 1150
    said_keras, said_tflite = keras > threshold, tflite > threshold
    assert (said_keras == said_tflite)[clear].all()
    # No test digit is "not a digit"; of the digits inverted some are: both decisions are seen.
    assert not said_keras[:1000].any() and said_keras[1000:].any()


READER_COMPARE = """
import json, sys
import keras
import numpy as np
from ai_edge_litert.interpreter import Interpreter

folder, strips = sys.argv[1], np.load(sys.argv[2])
keras_logits = keras.models.load_model(f"{folder}/model.keras").predict(strips, verbose=0)
interpreter = Interpreter(model_path=f"{folder}/model.tflite")
runner = interpreter.get_signature_runner()
(input_name,) = runner.get_input_details()
outputs = [next(iter(runner(**{input_name: strip[np.newaxis]}).values()))[0] for strip in strips]
print(json.dumps({"keras": keras_logits.tolist(), "tflite": np.stack(outputs).tolist()}))
"""


def test_the_readers_tflite_reads_as_its_keras_model(test_digits, tmp_path):
    """The strips (touching.wide_mark) of 60 marks of two and three touching test digits, as
    the benchmark renders them: logits within READER_LOGIT_TOLERANCE (float32's rounding), the
    same surest paths."""
    folder = SHIPPED / "not_a_digit" / "reader"
    if not (folder / "model.tflite").is_file():
        missing(f"the shipped model has no not_a_digit/reader/ ({folder})")
    if importlib.util.find_spec("ai_edge_litert") is None:
        missing("needs ai-edge-litert (requirements-dev.txt) to run model.tflite")
    x = test_digits[0]
    strips = []
    for name in ("two digits touching, boxes overlapping", "three digits joined by a stroke"):
        render = renderings.RENDERINGS[name][1]
        for index in range(30):
            image, _, _ = render(x[index], index, x[index + 1], x[index + 2])
            grey = np.asarray(image.convert("L"), np.float32) / 255
            inks, _, soft = pictures.digits_ink(grey)
            strips.append(touching.wide_mark(max(inks, key=lambda ink: ink.shape[1]), soft)[0])
    np.save(tmp_path / "strips.npy", np.stack(strips)[..., np.newaxis])
    result = subprocess.run([sys.executable, "-c", READER_COMPARE, str(folder),
                             str(tmp_path / "strips.npy")], capture_output=True, text=True,
                            cwd=ROOT, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr
    compared = json.loads(result.stdout.strip().splitlines()[-1])
    keras, tflite = np.array(compared["keras"]), np.array(compared["tflite"])
    assert np.abs(keras - tflite).max() < READER_LOGIT_TOLERANCE
    paths = [[touching.surest_path(logits)[0] for logits in both] for both in (keras, tflite)]
    assert paths[0] == paths[1] and sum(len(path) >= 2 for path in paths[0]) >= 40
