"""Pictures people take of their digits: each test makes its own picture, reads it with
decode_picture + find_digits, and classifies it with the trained model."""

import io
import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

import mnist_digit_recognition as mdr
from mnist_digits import model_files
from conftest import PROBABILITY_TOLERANCE, run_main
from mnist_digits.pictures import decode_picture, find_digits

SHIPPED = Path(__file__).resolve().parent.parent / model_files.DEFAULT_MODEL_DIR


@pytest.fixture(scope="module")
def model():
    if not (SHIPPED / "model.keras").is_file():
        pytest.skip(f"the shipped model is missing ({SHIPPED})")
    return mdr.load_model(SHIPPED)


@pytest.fixture(scope="module")
def mnist(full_arrays):
    """The first 100 real test digits (uint8) and their labels."""
    return full_arrays["x_test"][:100], full_arrays["y_test"][:100]


def classify(model, digits):
    """(digits, probabilities) the model gives for a list of 28x28 arrays."""
    probabilities = model.predict(np.stack(digits)[..., np.newaxis], verbose=0)
    return probabilities.argmax(axis=1).tolist(), probabilities.max(axis=1).tolist()


def read(path):
    """The digits found in a picture file, left to right."""
    digits, _ = find_digits(decode_picture(Path(path).read_bytes()))
    return list(digits)


# --- Making pictures: ink is float in [0, 1] (1 = full ink), drawn onto paper ---------------

def mnist_ink(mnist, label, size):
    """The first real test digit of this label, enlarged smoothly to size x size."""
    x, y = mnist
    digit = Image.fromarray(x[np.flatnonzero(y == label)[0]])
    return np.asarray(digit.resize((size, size), Image.Resampling.BICUBIC), np.float32) / 255


def on_paper(ink, shape, top, left):
    canvas = np.zeros(shape, np.float32)
    canvas[top:top + ink.shape[0], left:left + ink.shape[1]] = ink
    return canvas


def dark_on_white(ink):
    return Image.fromarray(np.round(255 * (1 - ink)).astype(np.uint8))


def uneven_light_noise(mnist):
    """A 7 photographed with light falling off across the page, noisy, as JPEG."""
    ink = on_paper(mnist_ink(mnist, 7, 400), (480, 480), 40, 40)
    yy, xx = np.mgrid[0:480, 0:480] / 480
    paper = 0.3 + 0.6 * (0.7 * xx + 0.3 * yy) + 0.1 * np.exp(-((xx - 0.8) ** 2 + (yy - 0.2) ** 2) * 8)
    noise = np.random.default_rng(0).normal(0, 0.05, ink.shape)
    pixels = np.clip(paper * (1 - 0.85 * ink) + noise, 0, 1)
    return Image.fromarray(np.round(255 * pixels).astype(np.uint8)), {"quality": 70}


def framed(mnist, inset=0):
    """A 7 with a thin black frame drawn around the page (at its edge, or inset)."""
    image = dark_on_white(on_paper(mnist_ink(mnist, 7, 240), (300, 300), 30, 30))
    ImageDraw.Draw(image).rectangle([inset, inset, 299 - inset, 299 - inset], outline=0, width=2)
    return image, {}


def tightly_cropped(mnist, label):
    """A digit cropped to its ink: a 1 is then one line across the picture, a 7's bar another."""
    ink = mnist_ink(mnist, label, 280)
    rows, cols = np.nonzero(ink > 0.1)
    return dark_on_white(ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]), {}


def thin_pen(mnist):
    """A 7 drawn with a 2-pixel pen on a 1200x1200 canvas: two strokes."""
    image = Image.new("L", (1200, 1200), 255)
    ImageDraw.Draw(image).line([(380, 260), (820, 250), (560, 980)], fill=0, width=2, joint="curve")
    return image, {}


def exif_rotated(mnist):
    """A phone's JPEG: pixels stored sideways, EXIF orientation 6 says "rotate 90° clockwise"."""
    image = dark_on_white(on_paper(mnist_ink(mnist, 7, 280), (400, 300), 60, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    return image.convert("RGB").transpose(Image.Transpose.ROTATE_90), {"exif": exif, "quality": 90}


def two_digits(mnist):
    """"47" side by side on one page."""
    ink = on_paper(mnist_ink(mnist, 4, 240), (300, 600), 30, 40)
    ink += on_paper(mnist_ink(mnist, 7, 240), (300, 600), 30, 320)
    return dark_on_white(np.clip(ink, 0, 1)), {}


def four_digits(mnist):
    """"2026" side by side on one page."""
    ink = sum(on_paper(mnist_ink(mnist, label, 220), (300, 1000), 40, 20 + 240 * i)
              for i, label in enumerate((2, 0, 2, 6)))
    return dark_on_white(np.clip(ink, 0, 1)), {}


def big_one_small_zero(mnist, mirrored=False):
    """A tall 1 beside a 0 half its height: the 1 is the main digit, though the 0 has more ink."""
    ink = on_paper(mnist_ink(mnist, 1, 360), (400, 600), 20, 20)
    ink += on_paper(mnist_ink(mnist, 0, 180), (400, 600), 200, 400)
    return dark_on_white(np.clip(ink[:, ::-1] if mirrored else ink, 0, 1)), {}


def blue_ink(mnist):
    ink = on_paper(mnist_ink(mnist, 2, 200), (260, 260), 30, 30)[..., np.newaxis]
    pixels = np.array([255, 255, 255]) * (1 - ink) + np.array([25, 50, 200]) * ink
    return Image.fromarray(np.round(pixels).astype(np.uint8)), {}


def transparent(mnist):
    """Black ink on a transparent background, as drawing programs save it."""
    ink = on_paper(mnist_ink(mnist, 3, 200), (260, 260), 30, 30)
    pixels = np.zeros((260, 260, 4), np.uint8)
    pixels[..., 3] = np.round(255 * ink)
    return Image.fromarray(pixels), {}


def ruled_lines(mnist):
    """A 5 written across two light-blue ruled lines that cross the whole page."""
    image = Image.new("RGB", (300, 300), "white")
    draw = ImageDraw.Draw(image)
    for y in (100, 200, 280):
        draw.line([(0, y), (299, y)], fill=(140, 170, 220), width=3)
    ink = on_paper(mnist_ink(mnist, 5, 240), (300, 300), 30, 30)[..., np.newaxis]
    pixels = np.asarray(image) * (1 - ink) + np.array([20, 20, 40]) * ink
    return Image.fromarray(np.round(pixels).astype(np.uint8)), {}


def notebook_page(mnist):
    """A 2 whose bottom stroke sits on one of a notebook page's grey ruled lines."""
    ink = mnist_ink(mnist, 2, 300)
    image = Image.new("L", (500, 600), 255)
    bottom = 100 + np.flatnonzero(ink.max(axis=1) > 0.5).max() - 6
    for y in range(bottom % 40, 600, 40):
        ImageDraw.Draw(image).line([(0, y), (499, y)], fill=150, width=2)
    pixels = np.asarray(image, np.float32) * (1 - on_paper(ink, (600, 500), 100, 100))
    return Image.fromarray(np.round(pixels).astype(np.uint8)), {}


def tilted_line(mnist):
    """A 5 across a ruled line tilted by 2 degrees, as in a photo held slightly askew."""
    image = Image.new("L", (600, 600), 255)
    ImageDraw.Draw(image).line([(0, 300), (599, 300 + 600 * np.tan(np.radians(2)))], fill=120, width=3)
    pixels = np.asarray(image, np.float32) * (1 - on_paper(mnist_ink(mnist, 5, 400), (600, 600), 100, 100))
    return Image.fromarray(np.round(pixels).astype(np.uint8)), {}


def big_scan(mnist):
    """A 4000x3000 scan of a 9 with slightly grey, noisy paper."""
    ink = on_paper(mnist_ink(mnist, 9, 1000), (4000, 3000), 1500, 1000)
    paper = 0.93 + np.random.default_rng(1).normal(0, 0.01, ink.shape)
    pixels = np.clip(paper * (1 - 0.9 * ink), 0, 1)
    return Image.fromarray(np.round(255 * pixels).astype(np.uint8)), {"quality": 90}


PICTURES = {  # file name (its digits are the expected answer): how to make it
    "uneven_light_noise_7.jpg": uneven_light_noise,
    "thin_frame_7.png": framed,
    "inset_frame_7.png": lambda mnist: framed(mnist, inset=25),
    "tightly_cropped_1.png": lambda mnist: tightly_cropped(mnist, 1),
    "tightly_cropped_7.png": lambda mnist: tightly_cropped(mnist, 7),
    "thin_pen_big_canvas_7.png": thin_pen,
    "exif_rotated_7.jpg": exif_rotated,
    "two_digits_47.png": two_digits,
    "four_digits_2026.png": four_digits,
    "big_one_small_zero_10.png": big_one_small_zero,
    "small_zero_big_one_01.png": lambda mnist: big_one_small_zero(mnist, mirrored=True),
    "blue_ink_2.png": blue_ink,
    "transparent_3.png": transparent,
    "ruled_lines_5.png": ruled_lines,
    "notebook_page_2.png": notebook_page,
    "tilted_ruled_line_5.png": tilted_line,
    "scan_4000px_9.jpg": big_scan,
}


def make_picture(name, mnist, folder):
    image, options = PICTURES[name](mnist)
    path = Path(folder) / name
    image.save(path, **options)
    return path


def expected_digits(name):
    return [int(d) for d in re.search(r"_(\d+)\.\w+$", name).group(1)]


@pytest.mark.parametrize("name", PICTURES)
def test_picture_is_read_as_its_digits(name, model, mnist, tmp_path):
    digits, probabilities = classify(model, read(make_picture(name, mnist, tmp_path)))
    assert digits == expected_digits(name), f"probabilities {probabilities}"


@pytest.mark.parametrize("name, main", [("big_one_small_zero_10.png", 0),
                                        ("small_zero_big_one_01.png", 1)])
def test_the_main_digit_is_the_tallest(name, main, mnist, tmp_path):
    path = make_picture(name, mnist, tmp_path)
    assert find_digits(decode_picture(path.read_bytes()))[1] == main


def test_predict_reads_several_digits_as_the_number_they_make(model, mnist, tmp_path, capsys):
    """The text leads with the number and gives each digit's probability; --json adds the
    number and each digit's probability to the main digit's fields (the tallest: the 1 of "10")."""
    paths = [make_picture(name, mnist, tmp_path) for name in
             ("big_one_small_zero_10.png", "four_digits_2026.png", "blue_ink_2.png")]
    status, text, err = run_main(capsys, "predict", "--model-dir", SHIPPED, *paths)
    assert status == 0 and err == []
    status, out, _ = run_main(capsys, "predict", "--json", "--model-dir", SHIPPED, *paths)
    ten, year, two = answers = [json.loads(line) for line in out]
    assert (ten["number"], ten["digit"], ten["digits"]) == ("10", 1, [1, 0])
    assert ten["probability"] == ten["digit_probabilities"][0]
    assert (year["number"], year["digits"]) == ("2026", [2, 0, 2, 6])
    assert (two["number"], two["digit"]) == ("2", 2)
    assert "digits" not in two and "digit_probabilities" not in two
    _, alone = classify(model, read(paths[1]))  # Keras, each digit read alone
    assert year["digit_probabilities"] == pytest.approx(alone, abs=PROBABILITY_TOLERANCE + 1e-6)
    for line, path, answer in zip(text, paths, answers):
        each = ", ".join(f"{p:.1%}" for p in answer.get("digit_probabilities", []))
        assert line == (f"{path}: {answer['number']} ({len(answer['digits'])} digits: {each})"
                        if each else f"{path}: 2 ({two['probability']:.1%})")


def test_exif_orientation_is_applied(mnist, tmp_path):
    path = make_picture("exif_rotated_7.jpg", mnist, tmp_path)
    assert decode_picture(path.read_bytes()).shape == (400, 300)  # stored as 300 high, 400 wide
    with Image.open(path) as stored:
        assert stored.getexif()[0x0112] == 6


def enlarge(digit, factor):
    return np.kron(digit, np.ones((factor, factor), np.uint8))


def colourise(digit):
    """Dark-blue ink on yellowish paper."""
    ink = digit[..., np.newaxis] / 255
    return np.round(np.array([250, 240, 190]) * (1 - ink) + np.array([20, 30, 120]) * ink).astype(np.uint8)


MNIST_FORMS = {  # name: (format, options, pixels from a uint8 MNIST digit)
    "28x28 png": ("PNG", {}, lambda d: d),
    "28x28 png inverted": ("PNG", {}, lambda d: 255 - d),
    "3x jpeg": ("JPEG", {"quality": 95}, lambda d: enlarge(d, 3)),
    "5x png inverted": ("PNG", {}, lambda d: 255 - enlarge(d, 5)),
    "2x blue ink on yellowish paper": ("PNG", {}, lambda d: colourise(enlarge(d, 2))),
}


@pytest.mark.parametrize("form", MNIST_FORMS)
def test_mnist_digits_saved_as_pictures(form, model, mnist, tmp_path):
    fmt, options, transform = MNIST_FORMS[form]
    x, y = mnist
    found = []
    for i, digit in enumerate(x[:30]):
        path = tmp_path / f"mnist_{i}_{y[i]}.{fmt.lower()}"
        Image.fromarray(transform(digit)).save(path, fmt, **options)
        [one] = read(path)
        found.append(one)
    digits, _ = classify(model, found)
    assert np.mean(np.array(digits) == y[:30]) >= 29 / 30


def encoded(image, fmt="PNG"):
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def claimed_size_png(width, height):
    """A tiny PNG whose header claims width x height (a decompression bomb's header)."""
    data = bytearray(encoded(Image.new("L", (8, 8), 255)))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # the header chunk's CRC
    return bytes(data)


PHOTO = Image.effect_noise((200, 200), 60)
DAMAGED = {"empty": b"", "text": b"not an image", "png signature only": b"\x89PNG\r\n\x1a\n",
           "tiff (not accepted)": encoded(PHOTO, "TIFF")}
for fmt in ("PNG", "JPEG", "BMP", "GIF"):
    DAMAGED[f"truncated {fmt}"] = encoded(PHOTO, fmt)[:-len(encoded(PHOTO, fmt)) // 10]


@pytest.mark.parametrize("damaged", DAMAGED)
def test_damaged_files_are_not_images(damaged):
    """A file whose header is no image's is not one; an image cut short is named as such."""
    fmt = damaged.removeprefix("truncated ")
    words = f"^a {fmt} file that is damaged or cut short$" if damaged.startswith("truncated") \
        else "^not a PNG, JPEG, BMP or GIF image$"
    with pytest.raises(ValueError, match=words):
        decode_picture(DAMAGED[damaged])


@pytest.mark.parametrize("side", [8_000, 30_000])  # 64 megapixels; a decompression bomb
def test_huge_images_are_refused_before_decoding(side):
    with pytest.raises(ValueError, match="too large"):
        decode_picture(claimed_size_png(side, side))


BLANKS = {
    "white": Image.new("L", (40, 40), 255),
    "black": Image.new("L", (40, 40), 0),
    "transparent": Image.new("RGBA", (60, 60), (0, 0, 0, 0)),
    "noisy unevenly lit paper": Image.fromarray(np.round(255 * np.clip(
        np.linspace(0.4, 0.95, 300)[None, :] + np.random.default_rng(2).normal(0, 0.03, (300, 300)),
        0, 1)).astype(np.uint8)),
}


@pytest.mark.parametrize("blank", BLANKS)
def test_blank_pictures_have_no_digit(blank):
    with pytest.raises(ValueError, match=r"^no digit found \(the image is blank\)$"):
        find_digits(decode_picture(encoded(BLANKS[blank])))
