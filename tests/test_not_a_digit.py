"""Saying "not a digit": the shipped model's not_a_digit/ network (classifier.load_gate) as
predict and serve run it. Typed letters and drawn shapes get no digit, test digits keep theirs;
predict's words and JSON for one mark and for several; a model directory without the network
answers as before, not_a_digit null and a warning; a damaged one is one clear line; a newly
trained model keeps it. How often it is right on kinds it never saw is
benchmarks/not_a_digit.py's to measure, not these tests'."""

import json
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from mnist_digits import classifier, model_files
from conftest import SHIPPED, enlarge, run_main, save_image

FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"


def typed(path, text, size=200):
    """Dark text on white paper, as a letter typed and saved by a person."""
    image = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(image)
    draw.text((size / 2, size / 2), text, fill=0, anchor="mm",
              font=ImageFont.truetype(str(FONT), int(size * 0.6)))
    image.save(path)
    return path


def drawn(path, *strokes, size=200, width=12):
    """Pen strokes (points as fractions of the page) in dark ink on white paper."""
    image = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(image)
    for points in strokes:
        draw.line([(x * size, y * size) for x, y in points], fill=0, width=width, joint="curve")
    image.save(path)
    return path


def spiral(turns=3, points=120):
    angle = np.linspace(0, 2 * np.pi * turns, points)
    radius = 0.05 + 0.35 * angle / angle[-1]
    return list(zip(0.5 + radius * np.cos(angle), 0.5 + radius * np.sin(angle)))


LETTERS = ["A", "H", "K", "M", "W", "X", "E", "&", "#"]
# Not among them: a house drawn as one closed outline, read as a 0 (README's "Not handled"), and
# an R, called "not a digit" but too near the threshold (0.985 against 0.983) for another
# FreeType's rendering of it to be sure to be.
SHAPES = {
    "x": [[(0.25, 0.2), (0.75, 0.8)], [(0.75, 0.2), (0.25, 0.8)]],
    "zigzag": [[(0.2, 0.3), (0.35, 0.7), (0.5, 0.3), (0.65, 0.7), (0.8, 0.3)]],
    "star": [[(0.5, 0.15), (0.62, 0.8), (0.2, 0.4), (0.8, 0.4), (0.38, 0.8), (0.5, 0.15)]],
    "spiral": [spiral()],
}


@pytest.fixture(scope="module")
def not_digits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("not_digits")
    return ([typed(folder / f"typed_{i}.png", letter) for i, letter in enumerate(LETTERS)]
            + [drawn(folder / f"{name}.png", *strokes) for name, strokes in SHAPES.items()])


def answers(classify, gate, paths):
    return [classifier.answer_digits(classify, *classifier.read_picture(path), gate)
            for path in paths]


def test_typed_letters_and_drawn_shapes_are_not_digits(shipped_classifier, shipped_gate,
                                                       not_digits):
    said = {path.stem: answer for path, answer in
            zip(not_digits, answers(shipped_classifier, shipped_gate, not_digits))}
    missed = [name for name, answer in said.items() if not answer["not_a_digit"]]
    assert not missed, f"read as digits: {missed}"
    for answer in said.values():
        assert answer["digit"] is None and answer["number"] is None
        assert answer["closest_digit"] == int(np.argmax(answer["probabilities"]))


def test_test_digits_as_pictures_keep_their_digits(shipped_classifier, shipped_gate, test_digits,
                                                   tmp_path):
    digits, labels = test_digits
    paths = [save_image(tmp_path / f"{i}.png", 255 - enlarge(digit, 4))
             for i, digit in enumerate(digits)]
    said = answers(shipped_classifier, shipped_gate, paths)
    assert [a["not_a_digit"] for a in said] == [False] * len(paths)
    read = np.array([a["digit"] for a in said])
    assert (read == labels).mean() >= 0.98  # the 100 digits as the shipped model reads them
    assert all(a["closest_digit"] == a["digit"] and a["number"] == str(a["digit"]) for a in said)


def side_by_side(path, *pictures):
    """Pictures 112 px high (dark on white) side by side, 30 px apart: a mark each."""
    gap = np.full((112, 30), 255, np.uint8)
    return save_image(path, np.hstack([part for picture in pictures for part in (picture, gap)]))


def an_x(path):
    return np.asarray(Image.open(drawn(path, *SHAPES["x"], size=112, width=8)))


def test_predict_says_it_in_words_and_json_per_mark(shipped_model, test_digits, not_digits,
                                                    tmp_path, capsys):
    digits, labels = test_digits
    assert labels[0] == 7
    seven = save_image(tmp_path / "seven.png", 255 - enlarge(digits[0], 4))
    pair = side_by_side(tmp_path / "pair.png", 255 - enlarge(digits[0], 4), an_x(tmp_path / "x.png"))
    two_xs = side_by_side(tmp_path / "xx.png", an_x(tmp_path / "x1.png"), an_x(tmp_path / "x2.png"))
    x = not_digits[LETTERS.index("X")]
    files = [x, seven, pair, two_xs]

    status, out, err = run_main(capsys, "predict", *files, "--model-dir", SHIPPED)
    assert status == 0 and not err
    assert out[0].startswith(f"{x}: not a digit (closest: ") and out[0].endswith("%)")
    assert out[1].startswith(f"{seven}: 7 (")
    assert out[2].startswith(f"{pair}: 7? (2 marks: ") and out[2].endswith("%, not a digit)")
    assert out[3] == f"{two_xs}: not a digit (2 marks, none a digit)"

    status, out, err = run_main(capsys, "predict", "--json", *files, "--model-dir", SHIPPED)
    assert status == 0
    x_said, seven_said, pair_said, two_xs_said = map(json.loads, out)
    assert {key: x_said[key] for key in ("number", "digit", "not_a_digit")} == \
        {"number": None, "digit": None, "not_a_digit": True}
    assert 0 <= x_said["closest_digit"] <= 9 and len(x_said["probabilities"]) == 10
    assert {key: seven_said[key] for key in ("number", "digit", "not_a_digit", "closest_digit")} \
        == {"number": "7", "digit": 7, "not_a_digit": False, "closest_digit": 7}
    assert pair_said["number"] is None and pair_said["digits"] == [7, None]
    assert pair_said["digit"] == 7 and pair_said["not_a_digit"] is False  # the main (tallest) mark
    assert two_xs_said["digits"] == [None, None] and two_xs_said["not_a_digit"] is True


def copy_of_the_model(folder, with_gate):
    shutil.copytree(SHIPPED, folder, ignore=None if with_gate else
                    shutil.ignore_patterns(model_files.NOT_A_DIGIT_DIR))
    return folder


def test_a_model_directory_without_the_network_answers_not_a_digit_null(not_digits, tmp_path,
                                                                       capsys):
    model_dir = copy_of_the_model(tmp_path / "model", with_gate=False)
    x = not_digits[LETTERS.index("X")]
    status, out, err = run_main(capsys, "predict", "--json", x, "--model-dir", model_dir)
    said = json.loads(out[0])
    assert status == 0 and said["not_a_digit"] is None
    assert said["digit"] == said["closest_digit"] and said["number"] == str(said["digit"])
    assert err == [f"warning: {model_dir} has no not_a_digit/, so every mark is read as a digit: "
                   f"copy {SHIPPED.resolve() / 'not_a_digit'} into it to say \"not a digit\""]
    status, out, _ = run_main(capsys, "predict", x, "--model-dir", model_dir)
    assert out[0].startswith(f"{x}: {said['digit']} (")


def damaged(name, content):
    return lambda folder: (folder / name).write_bytes(content)


def cut_short(folder):
    """Both network files cut short (a failed copy, git-LFS pointers): whichever runs fails."""
    for name in ("model.tflite", "model.keras"):
        (folder / name).write_bytes(b"version https://git-lfs.github.com/spec/v1\n")


def the_digit_network(folder):
    for name in ("model.tflite", "model.keras"):
        shutil.copy(SHIPPED / name, folder / name)


@pytest.mark.parametrize("damage, words", [
    (damaged("settings.json", b"{"), ["settings.json cannot be read"]),
    (lambda folder: (folder / "settings.json").unlink(), ["settings.json cannot be read"]),
    (damaged("settings.json", b'{"rate": 0.0005}'), ['no "threshold" between 0 and 1', "None"]),
    (damaged("settings.json", b'{"threshold": "high"}'), ["'high'"]),
    (damaged("settings.json", b'{"threshold": NaN}'), ["nan"]),
    (cut_short, ["cannot be loaded"]),
    (the_digit_network, ["gives 10 outputs, not the 11 or 12 expected"]),
], ids=["not JSON", "missing", "no threshold", "a threshold not a number", "NaN", "cut short",
        "the digit network"])
def test_a_damaged_network_is_one_clear_line(damage, words, not_digits, tmp_path, capsys):
    model_dir = copy_of_the_model(tmp_path / "model", with_gate=True)
    damage(model_dir / model_files.NOT_A_DIGIT_DIR)
    status, out, err = run_main(capsys, "predict", not_digits[0], "--model-dir", model_dir)
    assert status == 1 and not out and len(err) == 1, err
    for word in [*words, "delete", "not a digit"]:
        assert word in err[0], err[0]


def test_a_new_model_keeps_the_network_of_the_one_it_replaces_else_the_shipped_one(tmp_path):
    """gate_to_keep: what save_model_dir copies into the model it writes."""
    assert model_files.gate_to_keep(tmp_path / "new") == SHIPPED.resolve() / "not_a_digit"
    replaced = copy_of_the_model(tmp_path / "mine", with_gate=True)
    assert model_files.gate_to_keep(replaced) == replaced / "not_a_digit"
