"""The model directory (SPEC section 5): written beside its place and swapped in, so that a
crash leaves the previous one intact; the model it replaces kept as MODEL_DIR.previous (one
generation); its metadata; finding and loading a saved model; the "not a digit" network a
new model keeps."""

import contextlib
import io
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path

from . import figures
from .errors import UsageError, UserError, first_line
from .lazy import keras

DEFAULT_MODEL_DIR = "mnist_digit_recognition_model"
# The network that says "not a digit" (classifier.load_gate), in a folder of the model directory:
# it does not read digits, so a newly trained model keeps the one of the model it replaces, else
# the shipped model's.
NOT_A_DIGIT_DIR = "not_a_digit"
READER_DIR = "reader"  # in NOT_A_DIGIT_DIR: the network that reads digits that touch whole


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


def saveable_copy(model, twin):
    """The trained model as it is saved: its weights and optimizer state in `twin`, the same
    network built with Keras' own layers in float32 (fast on any machine), outside any
    tf.distribute strategy (whose predict would need every worker), and without float16's
    loss scaling."""
    twin.set_weights(model.get_weights())
    optimizer = model.optimizer
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    twin.compile(optimizer=optimizer.from_config(optimizer.get_config()), loss=model.loss,
                 metrics=["accuracy"])
    twin.optimizer.build(twin.trainable_variables)
    for target, source in zip(twin.optimizer.variables, optimizer.variables):
        target.assign(source)
    return twin


def new_sibling_dir(path):
    """An empty folder beside `path` with the permissions any mkdir gives (mkdtemp's are
    private, which would keep other users and serving containers from reading the model)."""
    while True:
        folder = path.parent / f".{path.name}.new-{secrets.token_hex(4)}"
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
            return folder


def save_model_dir(model, model_dir, metadata, reports=None, check=lambda: None):
    """Write model.keras, saved_model/, model.tflite, metadata.json, the pictures
    (draw_reports' arguments) and not_a_digit/ (gate_to_keep's) into a new sibling folder, then
    swap it into place: an interrupted or failed save leaves the previous model intact. A model
    it replaces is kept as MODEL_DIR.previous (replace_directory). check() is called between
    the files (it raises KeyboardInterrupt once Ctrl-C has come: interruption.stops_deferred)."""
    model_dir = Path(model_dir)
    if model.optimizer is not None and not model.optimizer.built:
        # An optimizer saved before its first step makes load_model warn that it skipped it.
        model.optimizer.build(model.trainable_variables)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = new_sibling_dir(model_dir)
    try:
        check()
        model.save(staging / "model.keras")
        check()
        model.export(str(staging / "saved_model"), verbose=False)
        check()
        with contextlib.redirect_stdout(io.StringIO()):  # the converter's progress lines
            model.export(str(staging / "model.tflite"), format="litert", verbose=False)
        check()
        (staging / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
        gate = gate_to_keep(model_dir)
        if gate is not None:
            shutil.copytree(gate, staging / NOT_A_DIGIT_DIR)
        failures = figures.draw_reports(staging, **(reports or {}))
        if failures:
            raise next(iter(failures.values()))
        check()
        replace_directory(staging, model_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def gate_to_keep(model_dir):
    """The not_a_digit/ folder a model saved into model_dir takes: that of the model it
    replaces, else the shipped model's; None where neither has one."""
    for folder in (Path(model_dir), shipped_model_dir()):
        if (folder / NOT_A_DIGIT_DIR / "settings.json").is_file():
            return folder / NOT_A_DIGIT_DIR
    return None


def shipped_model_dir():
    """The model the repository ships, beside the script."""
    return Path(__file__).resolve().parent.parent / DEFAULT_MODEL_DIR


def generations(model_dir):
    """[the metadata of the model in model_dir, that of the one kept before it]: None where
    there is none."""
    return [read_metadata(path) if is_model_dir(path) else None
            for path in (model_dir, previous_dir(model_dir))]


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
    return load_model_file(check_saved_model(model_dir) / "model.keras")


def load_model_file(path, advice="train the model again"):
    """keras.models.load_model(path), a failure a UserError ending in `advice`."""
    try:
        return keras.models.load_model(path)
    except Exception as error:
        reason = first_line(error)
        raise UserError(f"{path} cannot be loaded ({reason}): {advice}") from None


def read_metadata(model_dir):
    try:
        return json.loads((Path(model_dir) / "metadata.json").read_text())
    except (OSError, ValueError):
        return {}


def resolve_model_dir(model_dir):
    """The model to use, checked before anything is loaded: --model-dir, else the default one
    in the working directory, else the one beside this script (the model the repository ships)."""
    if model_dir is not None:
        return check_saved_model(model_dir, "pass the --model-dir of a trained model")
    here = Path(DEFAULT_MODEL_DIR)
    beside = shipped_model_dir()
    found = next((path for path in (here, beside) if is_model_dir(path)), None)
    if found is None:
        raise UsageError(f"no model directory at {here} nor at {beside}: train one first "
                         "(python mnist_digit_recognition.py) or pass --model-dir")
    return found


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
