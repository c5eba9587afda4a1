"""The program as a user runs it: a subprocess that trains, saves and is then loaded elsewhere."""

import json
import os

import numpy as np
import pytest

from mnist_digits import mnist_files

from conftest import (PROBABILITY_TOLERANCE, SHIPPED, assert_one_line_error, cpu_model_name,
                      expected_precisions, missing, run_main, run_program, run_python, snapshot)

PICTURES = ("confusion_matrix.png", "misclassified.png", "training_curves.png", "augmentation.png")


@pytest.fixture(scope="module")
def trained(small_npz, tmp_path_factory):
    """One real training run of the default network on 600 images, 1 epoch in batches of 8
    (about 70% on the slice's 300 test images; chance is 10%): (its model dir, the finished
    process). Read only: a test that changes a model directory changes a copy."""
    workdir = tmp_path_factory.mktemp("run")
    result = run_program("--epochs", "1", "--batch-size", "8", "--data", small_npz,
                         "--seed", "3", cwd=workdir)
    assert result.returncode == 0, result.stderr
    return workdir / "mnist_digit_recognition_model", result


def test_training_writes_the_model_directory(trained):
    model_dir, result = trained
    assert (model_dir / "model.keras").is_file()
    assert (model_dir / "saved_model" / "saved_model.pb").is_file()
    assert (model_dir / "metadata.json").is_file()
    assert (model_dir / "model.tflite").stat().st_size > 100_000
    gate = model_dir / "not_a_digit"  # the shipped model's, kept: it does not read digits
    assert snapshot(gate) == snapshot(SHIPPED / "not_a_digit")
    for name in PICTURES:
        assert (model_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    leftovers = [p.name for p in model_dir.parent.iterdir() if p.name != model_dir.name]
    assert leftovers == [], "staging or checkpoint folders were left behind"
    assert "test accuracy" in result.stdout and "saved to" in result.stdout
    assert "1 epoch," in result.stdout and "1 epochs" not in result.stdout
    assert "Traceback" not in result.stderr


def test_the_model_directory_is_readable_by_others_as_mkdir_makes_it(trained):
    """Not private as mkdtemp makes its folders: another user or a serving container reads it."""
    model_dir, _ = trained
    umask = os.umask(0)
    os.umask(umask)
    assert model_dir.stat().st_mode & 0o777 == 0o777 & ~umask
    assert (model_dir / "model.keras").stat().st_mode & 0o777 == 0o666 & ~umask


def test_the_run_learned_and_its_scores_add_up(trained, small_arrays):
    """Well above chance on the slice's test images (a pipeline with scrambled labels or an
    untrained model scores about 10%), and accuracy, per-digit accuracy and the confusion
    matrix are one count of the same 300 answers."""
    model_dir, result = trained
    metadata = json.loads((model_dir / "metadata.json").read_text())
    assert metadata["test_accuracy"] >= 0.6 and metadata["test_loss"] < 1.2, metadata
    confusion = np.array(metadata["confusion_matrix"])
    assert confusion.shape == (10, 10)
    np.testing.assert_array_equal(confusion.sum(axis=1),
                                  np.bincount(small_arrays["y_test"], minlength=10))
    assert metadata["test_accuracy"] == pytest.approx(np.trace(confusion) / 300, abs=1e-12)
    assert metadata["per_digit_accuracy"] == pytest.approx(
        {str(d): confusion[d, d] / confusion[d].sum() for d in range(10)}, abs=1e-12)
    assert f"test accuracy  {metadata['test_accuracy']:.2%}" in result.stdout
    assert f"test loss      {metadata['test_loss']:.4f}" in result.stdout


def test_metadata_records_the_run(trained, small_npz, small_arrays):
    import platform
    from datetime import datetime, timezone

    import mnist_digit_recognition as mdr

    model_dir, _ = trained
    metadata = json.loads((model_dir / "metadata.json").read_text())
    settings = metadata["settings"]
    assert {key: settings[key] for key in (
        "arch", "batchnorm", "epochs", "batch_size", "optimizer", "learning_rate",
        "validation_split", "augment", "rotation_range", "zoom_range", "shift_range",
        "augmentation_engine", "seed", "mixed_precision", "distribute", "data", "train_size",
        "model_dir")} == {
        "arch": "cnn", "batchnorm": True, "epochs": 1, "batch_size": 8, "optimizer": "adam",
        "learning_rate": None, "validation_split": 0.1, "augment": True, "rotation_range": 10.0,
        "zoom_range": 0.1, "shift_range": 0.1, "augmentation_engine": "layers", "seed": 3,
        "mixed_precision": None, "distribute": "auto", "data": str(small_npz),
        "train_size": None, "model_dir": "mnist_digit_recognition_model"}
    assert settings["bn_momentum"] == 0.9 and settings["final_halvings"] == pytest.approx(1 / 3)
    assert metadata["model"] == {"arch": "cnn", "batchnorm": True, "conv_dropout": 0.4,
                                 "dense_dropout": 0.4, "dropout_from_epoch": 2,
                                 "dtype": "float32", "parameters": 327_242}
    assert metadata["precision"] in expected_precisions()
    assert metadata["device"] == f"CPU: {cpu_model_name()} ({os.cpu_count()} cores)" or \
        metadata["device"].startswith("GPU: ")
    assert metadata["distribution"] == "one device"
    [epoch] = metadata["history"]
    assert set(epoch) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy",
                          "learning_rate", "epoch_seconds"}
    assert epoch["epoch"] == 1 and epoch["learning_rate"] == pytest.approx(1e-3)
    assert 0 < epoch["loss"] < 2.3 and 0.1 < epoch["accuracy"] <= 1
    assert 0 < epoch["val_loss"] and round(epoch["val_accuracy"] * 60, 3).is_integer()
    assert 0 < epoch["epoch_seconds"] < metadata["wall_seconds"]
    assert metadata["data"] == {"source": str(small_npz), "sha256": mnist_files.mnist_checksum(small_arrays),
                                "train_images": 540, "validation_images": 60, "test_images": 300}
    assert metadata["versions"] == {"python": platform.python_version(),
                                    "tensorflow": mdr.tf.__version__,
                                    "keras": mdr.keras.__version__, "numpy": np.__version__}
    created = datetime.fromisoformat(metadata["created"])
    assert 0 <= (datetime.now(timezone.utc) - created).total_seconds() < 3600
    assert metadata["command"].endswith(f"mnist_digit_recognition.py --epochs 1 --batch-size 8 "
                                        f"--data {small_npz} --seed 3")


def test_saved_model_loads_elsewhere_with_plain_keras_tensorflow_and_litert(trained, small_npz):
    """A fresh process that never imports our script: model.keras scores what metadata.json
    says on the same 300 test images; saved_model/ and the model.tflite just written give the
    same probabilities (model.tflite within README's bound, PROBABILITY_TOLERANCE) and the
    same digits."""
    model_dir, _ = trained
    code = f"""
import importlib.util, json, sys
import numpy as np, keras, tensorflow as tf
assert "mnist_digit_recognition" not in sys.modules
with np.load({str(small_npz)!r}) as data:
    x, y = data["x_test"].astype("float32")[..., None] / 255, data["y_test"]
keras_model = keras.models.load_model({str(model_dir / "model.keras")!r})
serving = tf.saved_model.load({str(model_dir / "saved_model")!r})
a = keras_model.predict(x, batch_size=500, verbose=0)
b = serving.serve(tf.constant(x)).numpy()
# ten float32 probabilities sum to 1 within 10 x 2**-24 = 6e-7
figures = {{"accuracy": float((a.argmax(1) == y).mean()), "rows_sum_to_1": bool(np.allclose(a.sum(1), 1, atol=1e-6)),
            "saved_model_difference": float(np.abs(a - b).max()),
            "saved_model_same_digits": int((a.argmax(1) == b.argmax(1)).sum())}}
if importlib.util.find_spec("ai_edge_litert"):
    from ai_edge_litert.interpreter import Interpreter
    runner = Interpreter(model_path={str(model_dir / "model.tflite")!r}).get_signature_runner()
    (name,) = runner.get_input_details()
    c = np.stack([next(iter(runner(**{{name: image[None]}}).values()))[0] for image in x])
    figures.update(tflite_difference=float(np.abs(a - c).max()),
                   tflite_same_digits=int((a.argmax(1) == c.argmax(1)).sum()))
print(json.dumps(figures))
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    print(figures)
    metadata = json.loads((model_dir / "metadata.json").read_text())
    assert figures["accuracy"] == pytest.approx(metadata["test_accuracy"], abs=1e-12)
    assert figures["rows_sum_to_1"]
    assert figures["saved_model_same_digits"] == 300
    assert figures["saved_model_difference"] < PROBABILITY_TOLERANCE
    if "tflite_difference" not in figures:
        missing("needs ai-edge-litert (requirements-dev.txt) to run model.tflite")
    assert figures["tflite_same_digits"] == 300 and figures["tflite_difference"] < PROBABILITY_TOLERANCE


def test_a_second_run_replaces_the_model_keeps_the_old_one_and_nothing_stale(trained, small_npz,
                                                                             tmp_path):
    """SPEC section 5: the model a run replaces is kept as MODEL_DIR.previous (one generation),
    and the run says so with both test accuracies. On a copy of the shared run's folder."""
    import shutil

    model_dir = tmp_path / trained[0].name
    shutil.copytree(trained[0], model_dir)
    before = json.loads((model_dir / "metadata.json").read_text())
    previous = tmp_path / f"{model_dir.name}.previous"  # an older model, kept by an earlier run
    shutil.copytree(trained[0], previous)
    (previous / "metadata.json").write_text(json.dumps(dict(before, test_accuracy=0.5)))
    result = run_program("--epochs", "1", "--data", small_npz, "--train-size", "200",
                         "--no-augmentation", "--no-batchnorm", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    after = json.loads((model_dir / "metadata.json").read_text())
    assert json.loads((previous / "metadata.json").read_text()) == before  # one generation
    assert result.stdout.splitlines()[-1] == (
        f"The model it replaces (test accuracy {before['test_accuracy']:.2%}, this one "
        f"{after['test_accuracy']:.2%}) is kept in {previous.name}/: to use it again, pass "
        f"--model-dir {previous.name} or move it back; the one kept there before (test "
        f"accuracy 50.00%) is deleted.")
    assert before["settings"]["train_size"] is None and before["model"]["batchnorm"] is True
    assert after["settings"]["train_size"] == 200 and after["model"]["batchnorm"] is False
    assert after["model"]["parameters"] == 325_578 and after["data"]["train_images"] == 180
    assert "augmentation.png" not in {p.name for p in model_dir.iterdir()}, "a stale picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == [model_dir.name, previous.name]


def test_no_network_and_no_data_says_how_to_use_data(tmp_path):
    """Keras' download cannot reach the network here (or in a sandbox): the message says
    what to do. Where MNIST is already in Keras' cache, the download is not needed."""
    from pathlib import Path

    home = tmp_path / "home"  # an empty Keras cache
    result = run_program("--epochs", "1", "--train-size", "100", cwd=tmp_path,
                         env={"MNIST_DATA": "", "KERAS_HOME": str(home), "HOME": str(home),
                              "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"})
    assert_one_line_error(result, "could not download MNIST", "--data", code=1)
    assert result.stdout == ""  # not Keras' "Downloading data from ..." before it
    assert not Path(tmp_path / "mnist_digit_recognition_model").exists()


def test_help_lists_every_flag_with_a_truthful_help(capsys):
    with pytest.raises(SystemExit) as done:
        run_main(capsys, "--help")
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:2] == [
        "usage: mnist_digit_recognition.py [flags]  (train: the default action)",
        "       mnist_digit_recognition.py {evaluate,predict,serve} ...  (each with its own --help)"]
    text = " ".join(out.split())
    for flag in ("--epochs", "--batch-size", "--no-batchnorm", "--conv-dropout", "--data",
                 "--train-size", "--model-dir", "--seed", "--augmentation-engine", "predict",
                 "evaluate", "serve", "--distribute", "--compare-batchnorm", "--resume",
                 "--optimizer"):
        assert flag in text
    assert "default: True" not in text and "default: None" not in text
    assert text.count("(default:") == text.count("default:"), "a default said twice"
    assert "cnn 0.4 from epoch 2, classic-cnn 0.25" in text  # each network's own dropout
    import mnist_digit_recognition as mdr

    parser = mdr.build_train_parser("x")
    assert all(action.help for action in parser._actions), "a flag without help"


def test_compare_batchnorm_trains_both_variants_and_prints_one_table(small_npz, tmp_path, capsys,
                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(capsys, "--compare-batchnorm", "--data", small_npz, "--train-size",
                              "300", "--epochs", "1", "--seed", "3", "--no-augmentation")
    assert code == 0, err
    with_bn = json.loads((tmp_path / "mnist_digit_recognition_model" / "metadata.json").read_text())
    without = json.loads((tmp_path / "mnist_digit_recognition_model-no-batchnorm" /
                          "metadata.json").read_text())
    assert with_bn["model"]["batchnorm"] is True and without["model"]["batchnorm"] is False
    assert with_bn["settings"]["seed"] == without["settings"]["seed"] == 3
    assert with_bn["data"]["sha256"] == without["data"]["sha256"]
    rows = out[out.index("Batch norm compared (seed 3):") + 1:]
    assert len(rows) == 3 and "test accuracy" in rows[0]
    for row, metadata, parameters in ((rows[1], with_bn, "327,242"), (rows[2], without, "325,578")):
        assert parameters in row and f"{metadata['test_accuracy']:.2%}" in row
        assert f"{metadata['test_loss']:.4f}" in row


def test_a_comparison_without_seed_resumes_with_the_seed_it_drew(small_npz, tmp_path, capsys,
                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    flags = ["--compare-batchnorm", "--data", small_npz, "--train-size", "300", "--epochs", "1",
             "--no-augmentation"]
    assert run_main(capsys, *flags)[0] == 0
    saved = [(tmp_path / name / "metadata.json").read_text() for name in
             ("mnist_digit_recognition_model", "mnist_digit_recognition_model-no-batchnorm")]
    seed = json.loads(saved[0])["settings"]["seed"]
    # Both variants finished: --resume finds them by the seed the comparison drew, trains
    # nothing and prints the table again.
    code, out, err = run_main(capsys, *flags, "--resume")
    assert code == 0, err
    assert f"Batch norm compared (seed {seed}):" in out
    assert saved == [(tmp_path / name / "metadata.json").read_text() for name in
                     ("mnist_digit_recognition_model", "mnist_digit_recognition_model-no-batchnorm")]


@pytest.mark.parametrize("arch, optimizer, parameters",
                         [("classic-cnn", "adam", 1_200_778), ("deep-cnn", "rmsprop", 730_602),
                          ("mlp", "sgd", 407_050)])
def test_other_architectures_train_from_the_command_line(arch, optimizer, parameters, small_npz,
                                                         tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(capsys, "--arch", arch, "--optimizer", optimizer, "--data", small_npz,
                            "--train-size", "200", "--epochs", "1")
    assert code == 0, err
    metadata = json.loads((tmp_path / "mnist_digit_recognition_model" / "metadata.json")
                          .read_text())
    assert metadata["model"]["arch"] == arch and metadata["model"]["parameters"] == parameters
    assert metadata["settings"]["optimizer"] == optimizer


def test_training_without_a_validation_split(small_npz, tmp_path, capsys, monkeypatch):
    """--validation-split 0 trains on every image; ReduceLROnPlateau watches the training loss
    and the history has no validation columns."""
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(capsys, "--data", small_npz, "--validation-split", "0",
                            "--train-size", "200", "--epochs", "2", "--no-augmentation")
    assert code == 0, err
    metadata = json.loads((tmp_path / "mnist_digit_recognition_model" / "metadata.json")
                          .read_text())
    assert metadata["data"]["train_images"] == 200 and metadata["data"]["validation_images"] == 0
    assert [row["epoch"] for row in metadata["history"]] == [1, 2]
    assert all("loss" in row and "val_loss" not in row for row in metadata["history"])
