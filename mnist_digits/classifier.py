"""Classifying with a saved model: LiteRT's interpreter on model.tflite where it is installed
(no TensorFlow to wait for), else model.keras on TensorFlow; arrays or people's pictures in,
the answers `predict` and `serve` give out."""

import os
import threading

import numpy as np

from . import pictures
from .errors import UserError, first_line
from .lazy import import_tensorflow_quietly, quiet_stderr
from .mnist_files import IMAGE_SHAPE, NUM_CLASSES, normalize_images
from .model_files import DEFAULT_MODEL_DIR, check_saved_model, load_model

EVAL_BATCH_SIZE = 500  # inference only: larger batches are faster and give the same numbers


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
    are `digits` (K, 28, 28): the number they make (a string: "7", "2026", "07"); the main
    digit's class and probabilities; where it holds several, each digit and its probability."""
    probabilities = classify(digits[..., np.newaxis])
    classes = probabilities.argmax(axis=1)
    answer = {"number": "".join(map(str, classes)),
              "digit": int(classes[main]),
              "probability": round(float(probabilities[main].max()), 6),
              "probabilities": [round(float(p), 6) for p in probabilities[main]]}
    if len(probabilities) > 1:
        answer["digits"] = [int(d) for d in classes]
        answer["digit_probabilities"] = [round(float(p), 6) for p in probabilities.max(axis=1)]
    return answer


def picture_answerer(classify):
    """answer(grey) for the server: a grey picture's digits found and answered."""
    return lambda grey: answer_digits(classify, *pictures.find_digits(grey))
