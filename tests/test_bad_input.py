"""Every user mistake we know of, run as the user would (SPEC section 7).

Each case is one command line, run through `main()` in this process (TensorFlow's start-up is
most of a subprocess's time), in a folder that already holds a saved model. Each must end with
exactly one line on stderr naming the problem, a non-zero exit status (2 for usage errors), no
training started, and the saved model untouched. A few cases run again as a real subprocess, to
show the same line and no traceback end to end.
"""

import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import mnist_digit_recognition as mdr
from mnist_digits import errors, model_files
from conftest import (CORRUPT_DATA, ROOT, SCRIPT, assert_one_line_error, run_main, run_program,
                      run_python, snapshot)

USAGE, FAILURE = 2, 1


def data_case(build):
    """A training command on data that `build(folder, arrays)` writes."""
    return lambda folder, arrays: ["--epochs", "1", "--data", build(folder, arrays)]


def write_file(name, content):
    def build(folder, arrays):
        path = folder / name
        path.write_bytes(content)
        return path
    return build


def image(name, pixels=None, content=None):
    def build(folder, arrays):
        path = folder / name
        if content is not None:
            path.write_bytes(content)
        elif pixels is not None:
            path.write_bytes(mdr.tf.io.encode_png(pixels[..., np.newaxis]).numpy())
        return path
    return build


def predict_case(build):
    return lambda folder, arrays: ["predict", build(folder, arrays)]


def flags(*words):
    return lambda folder, arrays: list(words)


def truncated_png(folder, arrays):
    path = folder / "cut.png"
    whole = mdr.tf.io.encode_png(arrays["x_test"][0][..., np.newaxis]).numpy()
    path.write_bytes(whole[: len(whole) // 2])
    return path


def model_dir_that_is_a_file(folder, arrays):
    (folder / "taken").write_text("not a directory")
    return ["--epochs", "1", "--model-dir", folder / "taken"]


def model_dir_below_a_file(folder, arrays):
    (folder / "file").write_text("x")
    return ["--epochs", "1", "--model-dir", folder / "file" / "model"]


def model_dir_of_photos(folder, arrays):
    (folder / "photos").mkdir()
    (folder / "photos" / "holiday.jpg").write_bytes(b"precious")
    return ["--epochs", "1", "--model-dir", folder / "photos"]


def empty_model_dir(folder, arrays):
    (folder / "empty").mkdir()
    return ["evaluate", "--model-dir", folder / "empty"]


def corrupt_model(folder, arrays):
    (folder / "broken").mkdir()
    (folder / "broken" / "model.keras").write_bytes(b"PK\x03\x04 not really a zip")
    return ["evaluate", "--model-dir", folder / "broken"]


def corrupt_tflite(folder, arrays):
    """A model directory whose model.tflite is cut short (a failed copy, a git-LFS pointer)."""
    (folder / "cut").mkdir()
    (folder / "cut" / "model.keras").write_bytes(b"PK\x03\x04 not read: LiteRT runs first")
    (folder / "cut" / "model.tflite").write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    mdr.tf.io.write_file(str(folder / "d.png"), mdr.tf.io.encode_png(arrays["x_test"][0][..., None]))
    return ["predict", "--model-dir", folder / "cut", folder / "d.png"]


def folder_to_predict(folder, arrays):
    (folder / "scans").mkdir()
    return ["predict", folder / "scans"]


def tensorboard_into_a_file(folder, arrays):
    (folder / "notes.txt").write_text("mine")
    return ["--epochs", "1", "--tensorboard", folder / "notes.txt"]


def interrupted_run_without_resume(folder, arrays):
    (folder / "mnist_digit_recognition_model.partial").mkdir()
    (folder / "mnist_digit_recognition_model.partial" / "progress.json").write_text(
        '{"epochs": 1, "history": [{"epoch": 1, "loss": 0.5}]}')
    return ["--epochs", "1"]


WHOLE, POSITIVE, FRACTION = "must be a whole number", "must be a whole number >= 1", "must be in [0, 1)"
SEEDS = "must be a whole number from 0 to 4294967295"
# (name, the command's arguments, words its one stderr line must hold: what is wrong and what
# to do, exit status)
CASES = [
    # flags
    ("epochs zero", flags("--epochs", "0"), ["--epochs", POSITIVE, "'0'", "--help"], USAGE),
    ("epochs not a number", flags("--epochs", "ten"), ["--epochs", f"{WHOLE}, not 'ten'"], USAGE),
    ("negative batch size", flags("--batch-size", "-4"), ["--batch-size", POSITIVE, "'-4'"],
     USAGE),
    ("conv dropout of 1", flags("--conv-dropout", "1"), ["--conv-dropout", FRACTION, "'1'"],
     USAGE),
    ("negative dense dropout", flags("--dense-dropout", "-0.1"),
     ["--dense-dropout", FRACTION, "'-0.1'"], USAGE),
    ("learning rate zero", flags("--learning-rate", "0"),
     ["--learning-rate", "must be a finite number > 0, not '0'"], USAGE),
    ("learning rate nan", flags("--learning-rate", "nan"),
     ["--learning-rate", "must be a finite number > 0, not 'nan'"], USAGE),
    ("validation split above 1", flags("--validation-split", "1.5"),
     ["--validation-split", FRACTION, "'1.5'"], USAGE),
    ("zoom range 2", flags("--zoom-range", "2"), ["--zoom-range", FRACTION, "'2'"], USAGE),
    ("rotation 400 degrees", flags("--rotation-range", "400"),
     ["--rotation-range", "must be in [0, 180], not '400'"], USAGE),
    ("unknown architecture", flags("--arch", "resnet"),
     ["--arch", "invalid choice: 'resnet'", "'cnn', 'classic-cnn', 'deep-cnn', 'mlp'"], USAGE),
    ("unknown optimizer", flags("--optimizer", "adagrad"),
     ["--optimizer", "invalid choice: 'adagrad'", "'adam', 'rmsprop', 'sgd'"], USAGE),
    ("unknown engine", flags("--augmentation-engine", "numpy"),
     ["--augmentation-engine", "invalid choice: 'numpy'", "'layers', 'imagedatagenerator'"],
     USAGE),
    ("unknown strategy", flags("--distribute", "tpu"),
     ["--distribute", "invalid choice: 'tpu'", "'auto', 'none', 'mirrored'"], USAGE),
    ("unknown flag", flags("--no-such-flag"), ["unrecognized arguments: --no-such-flag", "--help"],
     USAGE),
    ("negative seed", flags("--seed", "-1"), ["--seed", SEEDS, "'-1'"], USAGE),
    ("seed beyond 32 bits", flags("--seed", str(2**32)), ["--seed", SEEDS, "'4294967296'"], USAGE),
    ("batch larger than the training images", flags("--batch-size", "100000",
                                                     "--train-size", "300"),
     ["--batch-size 100,000 is more than the 270 images to train on", "smaller --batch-size"],
     USAGE),
    ("flags before the action", flags("--model-dir", "m1", "predict", "d0.png"),
     ["unrecognized arguments: predict d0.png", "action comes first",
      "mnist_digit_recognition.py predict [its flags and files]"], USAGE),
    ("misspelt action", flags("predcit", "d0.png"),
     ["unrecognized arguments: predcit d0.png; did you mean the action predict? "
      "mnist_digit_recognition.py predict [its flags and files]"], USAGE),
    ("a picture without the action", flags("d0.png"),
     ["unrecognized arguments: d0.png; to read pictures, the action comes first: "
      "mnist_digit_recognition.py predict d0.png"], USAGE),
    ("a file without the action", lambda folder, arrays: [write_file("scan", b"x")(folder, arrays),
                                                          "--epochs", "1"],
     ["unrecognized arguments: ", "scan; to read pictures, the action comes first: "
      "mnist_digit_recognition.py predict ", "scan"], USAGE),
    ("action written as a flag", flags("--predict", "d0.png"),
     ["unrecognized arguments: --predict d0.png", "is a word, not a flag",
      "mnist_digit_recognition.py predict [its flags and files]"], USAGE),
    ("abbreviated flag", flags("--epoch", "1"),
     ["unrecognized arguments: --epoch 1; did you mean --epochs?"], USAGE),
    ("misspelt flag", flags("--learnin-rate", "0.1"),
     ["unrecognized arguments: --learnin-rate 0.1; did you mean --learning-rate?"], USAGE),
    ("abbreviated flag of an action", flags("predict", "--js", "d0.png"),
     ["unrecognized arguments: --js; did you mean --json?", "predict --help"], USAGE),
    ("a flag of the action before it", flags("--json", "predict", "d0.png"),
     ["unrecognized arguments: --json predict d0.png", "action comes first"], USAGE),
    ("serve: port not a number", flags("serve", "--port", "http"),
     ["--port", f"{WHOLE}, not 'http'", "serve --help"], USAGE),
    ("train size zero", flags("--train-size", "0"), ["--train-size", POSITIVE, "'0'"], USAGE),
    ("train size above the data", flags("--train-size", "100000"),
     ["--train-size 100,000 is more than the 600 training images"], USAGE),
    ("too few images to hold any out", flags("--train-size", "1"),
     ["1 training image are too few for --validation-split 0.1", "more images or a smaller split"],
     USAGE),
    ("compare batch norm of the mlp", flags("--compare-batchnorm", "--arch", "mlp"),
     ["--compare-batchnorm", "the mlp has no batch norm layers", "use another --arch"], USAGE),
    ("dropout of the mlp", flags("--arch", "mlp", "--dense-dropout", "0.5"),
     ["--dense-dropout", "the mlp has no dropout layers", "use another --arch"], USAGE),
    ("resume with nothing to resume", flags("--resume"),
     ["--resume: no interrupted run in mnist_digit_recognition_model.partial",
      "start a new run without --resume"], USAGE),
    ("interrupted run, no --resume", interrupted_run_without_resume,
     ["an interrupted run is saved in mnist_digit_recognition_model.partial", "add --resume",
      "delete that folder"], USAGE),
    ("tensorboard logs into a file", tensorboard_into_a_file,
     ["cannot write TensorBoard logs to", "notes.txt", "choose another --tensorboard DIR"], USAGE),
    # data files: the broken ones of conftest.CORRUPT_DATA (tests/test_mnist_files.py reads them too)
    ("data path missing", data_case(lambda d, a: d / "nowhere.npz"),
     ["MNIST data not found at", "nowhere.npz (--data)", "pass --data PATH"], USAGE),
    *[(name, data_case(build), words, FAILURE) for name, build, words in CORRUPT_DATA],
    # model directories
    ("model dir is a file", model_dir_that_is_a_file,
     ["--model-dir", "taken is a file, not a directory", "choose another path"], USAGE),
    ("model dir below a file", model_dir_below_a_file,
     ["cannot write the model directory", "file/model", "choose a writable --model-dir"], USAGE),
    ("model dir holds other files", model_dir_of_photos,
     ["photos holds files that are not a model of this program", "refusing to replace them"],
     USAGE),
    ("evaluate: no model dir", flags("evaluate", "--model-dir", "nothing"),
     ["no model directory at nothing", "pass the --model-dir of a trained model"], USAGE),
    ("predict: no model dir", flags("predict", "--model-dir", "nothing", "d0.png"),
     ["no model directory at nothing", "pass the --model-dir of a trained model"], USAGE),
    ("predict: model.tflite cut short", corrupt_tflite,
     ["model.tflite cannot be loaded", "delete model.tflite"], FAILURE),
    ("evaluate: dir without a model", empty_model_dir,
     ["empty holds no model (no model.keras)", "pass the --model-dir of a trained model"], USAGE),
    ("evaluate: corrupt model.keras", corrupt_model,
     ["broken/model.keras cannot be loaded", "train the model again"], FAILURE),
    # images for predict
    ("predict: text file", predict_case(write_file("notes.txt", b"not an image")),
     ["notes.txt: not a PNG, JPEG, BMP or GIF image"], FAILURE),
    ("predict: missing file", predict_case(lambda d, a: d / "missing.png"),
     ["missing.png: no such file"], FAILURE),
    ("predict: truncated PNG", predict_case(truncated_png),
     ["cut.png: a PNG file that is damaged or cut short"], FAILURE),
    ("predict: a folder", folder_to_predict,
     ["scans: is a folder, not an image", "pass the image files in it"], FAILURE),
    ("predict: blank image", predict_case(image("blank.png", np.full((40, 40), 255, np.uint8))),
     ["blank.png: no digit found (the image is blank)"], FAILURE),
]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A model directory as a previous run leaves it (untrained: only its bytes matter)."""
    folder = tmp_path_factory.mktemp("saved") / "mnist_digit_recognition_model"
    model_files.save_model_dir(mdr.compile_model(mdr.build_model("mlp")), folder, {"test_accuracy": 0.5})
    return folder


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_one_clear_line(case, tmp_path, small_arrays, small_npz, saved_model,
                                     capsys, monkeypatch):
    name, arguments, words, status = case
    shutil.copytree(saved_model, tmp_path / saved_model.name)
    before = snapshot(tmp_path / saved_model.name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TF_CONFIG", "")
    args = arguments(tmp_path, small_arrays)
    if "--data" not in args and not {"predict", "serve"} & set(map(str, args)):
        args += ["--data", small_npz]

    code, out, err = run_main(capsys, *args)

    assert code == status, err
    assert len(err) == 1, err
    assert err[0].startswith("error: "), err[0]
    for word in words:
        assert word in err[0], err[0]
    assert not any("allow_pickle" in line for line in err), "numpy's advice is beside the point"
    assert not any("Epoch" in line for line in out), "training started before the mistake was found"
    assert snapshot(tmp_path / saved_model.name) == before, "the saved model was touched"
    assert not list(tmp_path.glob("*.partial")) or name == "interrupted run, no --resume"


END_TO_END = ["epochs zero", "data path missing", "predict: text file",
              "evaluate: corrupt model.keras", "flags before the action",
              "a picture without the action"]


@pytest.mark.parametrize("name", END_TO_END)
def test_the_same_mistakes_in_a_real_process_print_one_line_and_no_traceback(
        name, tmp_path, small_arrays, small_npz, saved_model):
    _, arguments, words, status = next(case for case in CASES if case[0] == name)
    shutil.copytree(saved_model, tmp_path / saved_model.name)
    args = arguments(tmp_path, small_arrays)
    if "--data" not in args and "predict" not in map(str, args):
        args += ["--data", small_npz]
    result = run_program(*args, cwd=tmp_path, env={"TF_CONFIG": ""})
    line = assert_one_line_error(result, *words, code=status)
    assert result.stderr.strip() == line, "TensorFlow's start-up lines reached the terminal"


def test_a_python_without_the_requirements_is_told_which_package_and_how_to_set_up():
    """The script run by a Python that lacks a package it imports: one line naming the package
    and README's set-up command, no traceback. First a Python without its site-packages (-S:
    no NumPy), then one where Pillow alone cannot be imported."""
    assert errors.SET_UP in (ROOT / "README.md").read_text()
    result = subprocess.run([sys.executable, "-S", str(SCRIPT), "predict", "samples/seven.png"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert_one_line_error(result, "has no numpy (module numpy)", errors.SET_UP, code=1)
    result = run_python(f"""
import runpy, sys
sys.modules["PIL"] = None  # `import PIL` raises ModuleNotFoundError
sys.argv = ["mnist_digit_recognition.py", "predict", "samples/seven.png"]
runpy.run_path({str(SCRIPT)!r}, run_name="__main__")
""", cwd=ROOT)
    line = assert_one_line_error(result, "has no Pillow (module PIL)", errors.SET_UP, code=1)
    assert line.startswith(f"error: this Python ({sys.executable}) ")


def test_usage_errors_answer_before_tensorflow_is_imported(tmp_path):
    """--help and the mistakes found from the flags alone need no TensorFlow, whose import
    takes seconds: the script runs them one after another in one process, which must never
    have imported it."""
    (tmp_path / "a file").write_text("x")
    cases = [["--help"], ["--epochs", "ten"], ["predict", "--help"], ["serve", "--help"],
             ["--data", "nowhere.npz"], ["--model-dir", "a file"], ["predcit", "d.png"],
             ["--compare-batchnorm", "--arch", "mlp"], ["--epoch", "1"], ["--predict", "d.png"],
             ["evaluate", "--model-dir", "nowhere"], ["predict", "--model-dir", "nowhere", "d.png"]]
    code = f"""
import runpy, sys
sys.path.insert(0, {str(SCRIPT.parent)!r})  # as `python path/to/the/script.py` does
for args in {cases!r}:
    sys.argv = ["mnist_digit_recognition.py", *args]
    try:
        runpy.run_path({str(SCRIPT)!r}, run_name="__main__")
    except SystemExit as exit:
        print("exit", exit.code, "tensorflow" in sys.modules, file=sys.stderr)
"""
    started = time.perf_counter()
    result = run_python(code, cwd=tmp_path)
    exits = [line.split() for line in result.stderr.splitlines() if line.startswith("exit ")]
    assert exits == [["exit", str(code), "False"] for code in (0, 2, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2)], \
        result.stderr
    assert time.perf_counter() - started < 30  # TensorFlow's import alone takes 5-10 s


def test_a_flag_value_that_names_an_action_is_only_a_value():
    args = mdr.parse_flags("train", ["--model-dir", "serve", "--tensorboard", "predict"])
    assert (args.model_dir, args.tensorboard) == ("serve", "predict")


def test_the_table_covers_at_least_25_distinct_mistakes():
    assert len({name for name, *_ in CASES}) == len(CASES) >= 25


def test_invalid_tf_config_is_a_usage_error(tmp_path, small_npz, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TF_CONFIG", "{not json")
    code, _, err = run_main(capsys, "--epochs", "1", "--data", small_npz)
    assert code == USAGE and len(err) == 1 and "TF_CONFIG" in err[0]


def test_tensorboard_without_its_package_is_refused_before_training(tmp_path, capsys):
    """TensorFlow 2.21 does not bring the tensorboard package; --tensorboard needs it."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is not None:
        pytest.skip("tensorboard is installed here")
    status, out, err = run_main(capsys, "--tensorboard", tmp_path / "logs",
                                "--model-dir", tmp_path / "model")
    assert (status, out) == (2, [])
    assert err == ["error: --tensorboard needs the tensorboard package: pip install tensorboard, "
                   "or leave out --tensorboard"]
    assert not (tmp_path / "model.partial").exists() and not (tmp_path / "logs").exists()
