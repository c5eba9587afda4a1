"""Classifying with a saved model: LiteRT's interpreter on model.tflite where it is installed
(no TensorFlow to wait for), else model.keras on TensorFlow; arrays or people's pictures in,
the answers `predict` and `serve` give out, with "not a digit" where the model directory's
not_a_digit/ network says a mark holds none, and digits that touch read by not_a_digit/reader/
where it reads them surer than the cut (touching)."""

import json
import os
import threading
from typing import NamedTuple

import numpy as np

from . import pictures, touching
from .errors import UserError, first_line
from .lazy import import_tensorflow_quietly, quiet_stderr
from .mnist_files import IMAGE_SHAPE, NUM_CLASSES, normalize_images
from .model_files import (DEFAULT_MODEL_DIR, NOT_A_DIGIT_DIR, READER_DIR, check_saved_model,
                          load_model, load_model_file)

EVAL_BATCH_SIZE = 500  # inference only: larger batches are faster and give the same numbers


def load_classifier(model_dir=DEFAULT_MODEL_DIR):
    """classify(images (N, 28, 28, 1) float32) -> probabilities (N, 10), safe to call from
    many threads. It runs model.tflite on LiteRT's interpreter where ai-edge-litert is
    installed (no TensorFlow to wait for), else model.keras on TensorFlow: the same digits."""
    path = check_saved_model(model_dir)
    return load_network(path, (NUM_CLASSES,), lambda: load_model(path),
                        "train the model again, or delete model.tflite to use model.keras")


# The not_a_digit/ network's outputs: the ten digits, "not a digit"[, "digits that touch"].
GATE_OUTPUTS = (NUM_CLASSES + 1, NUM_CLASSES + 2)


class Gate(NamedTuple):
    """gate(images (N, 28, 28, 1) float32) -> (N,) bools, True for the marks that hold no digit:
    the not_a_digit/ network's outputs beyond the ten digits ("not a digit" and, in twelve-output
    networks, "digits that touch"), added up, above the threshold. gate.network(images) gives
    all its outputs."""
    network: object
    threshold: float

    def __call__(self, images):
        return self.no_digit_score(self.network(images)) > self.threshold

    @staticmethod
    def no_digit_score(outputs):
        """The network's outputs (N, 11 or 12) -> (N,): how surely each mark holds no digit."""
        return outputs[:, NUM_CLASSES:].sum(axis=1)


def load_gate(model_dir=DEFAULT_MODEL_DIR):
    """The Gate of MODEL_DIR/not_a_digit/: its network (eleven or twelve outputs) and the
    threshold in its settings.json. None where the directory has no such folder."""
    folder = check_saved_model(model_dir) / NOT_A_DIGIT_DIR
    if not folder.is_dir():
        return None
    advice = (f"copy {NOT_A_DIGIT_DIR}/ again from the model it came with, or delete {folder} to "
              "answer without saying \"not a digit\"")
    threshold = read_threshold(folder / "settings.json", advice)
    network = load_network(folder, GATE_OUTPUTS,
                           lambda: load_model_file(folder / "model.keras", advice), advice)
    return Gate(network, threshold)


READER_OUTPUTS = NUM_CLASSES + 1  # at each of the reader's steps: CTC's blank, the ten digits


def load_reader(model_dir=DEFAULT_MODEL_DIR, when_needed=False):
    """reader(strips (N, 28, 84, 1) float32) -> logits (N, 21, READER_OUTPUTS): the network of
    MODEL_DIR/not_a_digit/reader/ that reads a mark of digits that touch whole (touching.Splitter).
    None where there is no such folder. `when_needed`: loaded at its first call (most pictures
    never need it); a reader that cannot be loaded fails each call with the same UserError."""
    folder = check_saved_model(model_dir) / NOT_A_DIGIT_DIR / READER_DIR
    if not folder.is_dir():
        return None
    advice = (f"copy {NOT_A_DIGIT_DIR}/ again from the model it came with, or delete {folder} to "
              "read digits that touch by cutting them only")

    def load():
        reader = load_network(folder, (READER_OUTPUTS,),
                              lambda: load_model_file(folder / "model.keras", advice), advice)
        try:
            shape = reader(np.zeros((1, *touching.STRIP_SHAPE, 1), np.float32)).shape
        except Exception as error:  # a network made for other pictures
            shape = first_line(error)
        expected = (1, touching.STRIP_STEPS, READER_OUTPUTS)
        if shape != expected:
            raise UserError(f"{folder} holds no reader of {touching.STRIP_SHAPE} strips (it gives "
                            f"{shape}, not {expected}): {advice}")
        return reader
    if not when_needed:
        return load()
    loaded, lock = {}, threading.Lock()

    def reader(strips):
        with lock:
            if not loaded:
                try:
                    loaded["reader"] = load()
                except UserError as error:
                    loaded["error"] = error
        if "error" in loaded:
            raise loaded["error"]
        return loaded["reader"](strips)
    return reader


def read_threshold(path, advice):
    """The "not a digit" threshold in settings.json: a number between 0 and 1."""
    try:
        threshold = json.loads(path.read_text()).get("threshold")
    except (OSError, ValueError, AttributeError) as error:
        raise UserError(f"{path} cannot be read ({first_line(error)}): {advice}") from None
    if type(threshold) is not float or not 0 < threshold < 1:
        raise UserError(f"{path} has no \"threshold\" between 0 and 1 (it holds "
                        f"{threshold!r}): {advice}")
    return threshold


def load_network(folder, outputs, load_keras, advice):
    """run(images (N, 28, 28, 1), or the reader's strips) -> (N, outputs) (the reader's: (N,
    steps, outputs)): folder/model.tflite on LiteRT's interpreter where it is installed, else
    the Keras model load_keras() gives, on TensorFlow. A network that cannot be loaded, or
    gives a number of outputs not among `outputs`, is a UserError ending in `advice`."""
    lock = threading.Lock()  # one call at a time: an interpreter is not thread-safe
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = None
    if Interpreter is None or not (folder / "model.tflite").is_file():
        import_tensorflow_quietly()
        model = load_keras()
        check_outputs(model.output_shape[-1], outputs, folder / "model.keras", advice)

        def run_keras(images):
            with lock:
                return np.asarray(model.predict_on_batch(np.asarray(images, np.float32)))
        return run_keras
    try:
        with quiet_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
            # One image at a time, on one thread: more threads only wait on each other here.
            interpreter = Interpreter(model_path=str(folder / "model.tflite"), num_threads=1)
            interpreter.allocate_tensors()
    except Exception as error:
        reason = first_line(error)
        raise UserError(f"{folder / 'model.tflite'} cannot be loaded ({reason}): {advice}") \
            from None
    image_in = interpreter.get_input_details()[0]["index"]
    outputs_out = interpreter.get_output_details()[0]
    shape = outputs_out["shape"][1:]
    check_outputs(shape[-1], outputs, folder / "model.tflite", advice)

    def run(images):
        found = []
        with lock:
            for image in np.asarray(images, np.float32):
                interpreter.set_tensor(image_in, image[np.newaxis])
                interpreter.invoke()
                found.append(interpreter.get_tensor(outputs_out["index"])[0])
        return np.array(found).reshape(-1, *shape)
    return run


def remembering(run):
    """run(images), each image's outputs kept for the next calls. For one picture: touching's
    splitter reads its marks, and answer_digits then reads the same marks again."""
    memo = {}

    def remembered(images):
        images = np.asarray(images, np.float32)
        if len(images) == 0:
            return run(images)
        keys = [image.tobytes() for image in images]
        new = [i for i, key in enumerate(keys) if key not in memo]
        if new:
            memo.update(zip((keys[i] for i in new), run(images[new])))
        return np.stack([memo[key] for key in keys])
    return remembered


def for_one_picture(classify, gate):
    """classify and the gate, remembering what they read (remembering) while one picture is
    read and answered."""
    return (remembering(classify),
            None if gate is None else Gate(remembering(gate.network), gate.threshold))


def check_outputs(found, expected, path, advice):
    if found not in expected:
        expected = " or ".join(map(str, expected))
        raise UserError(f"{path} gives {found} outputs, not the {expected} expected: {advice}")


def read_picture(path, split=None):
    """pictures.read_picture, its refusal a UserError: (digits (K, 28, 28), the main one's index).
    `split`: touching.splitter's, to cut digits that touch apart."""
    try:
        return pictures.read_picture(path, split)
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


def not_a_digit(images, model_dir=DEFAULT_MODEL_DIR):
    """predict's companion: for the same images (arrays or file paths), True for each that the
    model directory's not_a_digit/ network says holds no digit; None where it has none. It
    loads the network at each call: for many calls, keep load_gate(model_dir)'s."""
    gate = load_gate(model_dir)
    return None if gate is None else gate(prepare_images(images))


def answer_digits(classify, marks, main, gate=None, read=None):
    """What `predict --json` and the server answer for a picture whose marks, left to right,
    are `marks` (K, 28, 28): the number their digits make (a string: "7", "2026", "07"; null
    where a mark holds no digit); the main mark's digit (null where it is none), its closest
    digit and probabilities; where it holds several, each one's digit and probability. With
    `gate` (load_gate's), "not_a_digit" says whether the main mark holds no digit; without, it
    is null. `read`: {a mark's index: its probabilities} for marks already read as digits
    (touching.Splitter's)."""
    images = marks[..., np.newaxis]
    probabilities = np.array(classify(images))
    has_gate = gate is not None
    no_digit = np.array(gate(images)) if has_gate else np.zeros(len(images), bool)
    for index, read_probabilities in (read or {}).items():
        probabilities[index], no_digit[index] = read_probabilities, False
    closest = probabilities.argmax(axis=1)
    digits = [None if none else int(digit) for digit, none in zip(closest, no_digit)]
    answer = {"number": None if no_digit.any() else "".join(map(str, closest)),
              "digit": digits[main],
              "not_a_digit": bool(no_digit[main]) if has_gate else None,
              "closest_digit": int(closest[main]),
              "probability": round(float(probabilities[main].max()), 6),
              "probabilities": [round(float(p), 6) for p in probabilities[main]]}
    if len(probabilities) > 1:
        answer["digits"] = digits
        answer["digit_probabilities"] = [round(float(p), 6) for p in probabilities.max(axis=1)]
    return answer


def answer_file(path, classify, gate=None, reader=None):
    """`predict`'s answer (answer_digits') for an image file: its marks found (read_picture,
    digits that touch cut apart or read whole by `reader`, load_reader's) and answered."""
    classify, gate = for_one_picture(classify, gate)
    split = touching.splitter(classify, gate, reader)
    digits, main = read_picture(path, split)
    return answer_digits(classify, digits, main, gate, split.read if split else None)


def picture_answerer(classify, gate=None, reader=None):
    """answer(grey) for the server: a grey picture's marks found (digits that touch cut apart
    or read whole) and answered."""
    def answer(grey):
        picture_classify, picture_gate = for_one_picture(classify, gate)
        split = touching.splitter(picture_classify, picture_gate, reader)
        marks, main = pictures.find_digits(grey, split)
        return answer_digits(picture_classify, marks, main, picture_gate,
                              split.read if split else None)
    return answer
