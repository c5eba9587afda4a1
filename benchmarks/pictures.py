"""The picture reading (mnist_digits/pictures.py) on MNIST's 10,000 test digits written as files people have.

    python benchmarks/pictures.py --data ../shared/data/mnist [--limit 300] [--renderings NAME ...]

Every test digit is rendered as a file in each rendering below (in a temporary folder, or
--folder), and each rendering's files are read by `predict --json` in one subprocess, exactly
as a user runs it. Per rendering: accuracy; files refused; answers changed against the model's
answers on the arrays themselves; the plain MNIST recipe's accuracy on the same files (crop to
the ink, fit a 20x20 box keeping the aspect ratio, centre of mass at (14, 14), nothing else,
then the same model); and milliseconds per picture of pictures.read_picture alone, in this
process (CPU time, on the first --timed files). For "two digits" a file holds test digits i
and i+1: it is right when both are found, in order, and read correctly. Results go to
benchmarks/results/pictures.json and pictures.md (with --renderings, the other renderings'
earlier results stay in them; a run with --limit writes them only under --save-as STEM).
Takes about 20 minutes on 2 CPU cores (the picture reading before issue 21 took an hour).
`--digits validation` reads the 6,000 training digits the shipped model held out instead
(results: pictures.validation.*): a change tuned on the test digits is checked there.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps
from scipy import ndimage

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCRIPT = ROOT / "mnist_digit_recognition.py"
RESULTS = HERE / "results"


# --- Renderings: a uint8 MNIST digit (light on dark, 28x28) and its index -> (image, format,
# save options). Ink is float in [0, 1], 1 = full ink. -----------------------------------------

def enlarged(digit, size, resample=Image.Resampling.BICUBIC):
    return np.asarray(Image.fromarray(digit).resize((size, size), resample), np.float32) / 255


def grey_image(pixels):
    return Image.fromarray(np.round(255 * np.clip(pixels, 0, 1)).astype(np.uint8))


def on_paper(ink, shape, top, left):
    canvas = np.zeros(shape, np.float32)
    canvas[top:top + ink.shape[0], left:left + ink.shape[1]] = ink
    return canvas


def disk(radius):
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return xx ** 2 + yy ** 2 <= radius ** 2


def as_mnist(digit, index):
    return Image.fromarray(digit), "PNG", {}


def dark_on_white(digit, index):
    return Image.fromarray(255 - digit), "PNG", {}


def scan_280(digit, index):
    return grey_image(1 - enlarged(digit, 280)), "PNG", {}


def small_on_page(digit, index):
    """The digit at 56 px somewhere on a 420x600 white page."""
    top, left = np.random.default_rng(index).integers(0, [600 - 56, 420 - 56])
    return grey_image(1 - on_paper(enlarged(digit, 56), (600, 420), top, left)), "PNG", {}


def jpeg_q30(digit, index):
    return grey_image(1 - enlarged(digit, 84)), "JPEG", {"quality": 30}


def coloured_ink(digit, index):
    """Dark-blue ink on yellowish paper, 112 px."""
    ink = enlarged(digit, 112)[..., np.newaxis]
    pixels = np.array([250, 240, 190]) * (1 - ink) + np.array([20, 30, 120]) * ink
    return Image.fromarray(np.round(pixels).astype(np.uint8)), "PNG", {}


def transparent(digit, index):
    """Black ink on a transparent background, 112 px, as drawing programs save it."""
    pixels = np.zeros((112, 112, 4), np.uint8)
    pixels[..., 3] = np.round(255 * enlarged(digit, 112))
    return Image.fromarray(pixels), "PNG", {}


def blurred(sigma):
    def render(digit, index):
        return grey_image(1 - ndimage.gaussian_filter(enlarged(digit, 56), sigma)), "PNG", {}
    return render


def low_resolution(size, shown):
    """The digit reduced to size x size, then enlarged smoothly to shown x shown."""
    def render(digit, index):
        small = Image.fromarray(digit).resize((size, size), Image.Resampling.BOX)
        return grey_image(1 - enlarged(np.asarray(small), shown)), "PNG", {}
    return render


def thick_marker(digit, index):
    """At 112 px, the ink grown by a disk of radius 4 (a marker about 2 MNIST pixels wider)."""
    return grey_image(1 - ndimage.grey_dilation(enlarged(digit, 112), footprint=disk(4))), "PNG", {}


def thin_pen(digit, index):
    """At 112 px, the ink shrunk by a disk of radius 3 (strokes about 1 MNIST pixel wide)."""
    return grey_image(1 - ndimage.grey_erosion(enlarged(digit, 112), footprint=disk(3))), "PNG", {}


def uneven_light_noise(digit, index):
    """A photo: light falling off across a 240x240 page, noise, JPEG q70 (as tests/test_photos)."""
    ink = on_paper(enlarged(digit, 200), (240, 240), 20, 20)
    yy, xx = np.mgrid[0:240, 0:240] / 240
    paper = 0.3 + 0.6 * (0.7 * xx + 0.3 * yy) + 0.1 * np.exp(-((xx - 0.8) ** 2 + (yy - 0.2) ** 2) * 8)
    noise = np.random.default_rng(index).normal(0, 0.05, ink.shape)
    return grey_image(paper * (1 - 0.85 * ink) + noise), "JPEG", {"quality": 70}


def ruled_paper(digit, index):
    """The digit written across light-blue ruled lines that cross the whole 240x240 page."""
    image = Image.new("RGB", (240, 240), "white")
    for y in range(16, 240, 40):
        ImageDraw.Draw(image).line([(0, y), (239, y)], fill=(140, 170, 220), width=3)
    ink = on_paper(enlarged(digit, 192), (240, 240), 24, 24)[..., np.newaxis]
    pixels = np.asarray(image) * (1 - ink) + np.array([20, 20, 40]) * ink
    return Image.fromarray(np.round(pixels).astype(np.uint8)), "PNG", {}


def framed(digit, index):
    """A thin black frame around the 240x240 page."""
    image = grey_image(1 - on_paper(enlarged(digit, 192), (240, 240), 24, 24))
    ImageDraw.Draw(image).rectangle([0, 0, 239, 239], outline=0, width=2)
    return image, "PNG", {}


def exif_rotated(digit, index):
    """A phone's JPEG: pixels stored sideways, EXIF orientation 6 turns them upright."""
    image = grey_image(1 - on_paper(enlarged(digit, 224), (320, 240), 48, 8))
    exif = Image.Exif()
    exif[0x0112] = 6
    return image.transpose(Image.Transpose.ROTATE_90), "JPEG", {"exif": exif, "quality": 90}


def two_digits(digit, index, right):
    """Test digits i and i+1 side by side on a 240x480 page."""
    ink = on_paper(enlarged(digit, 192), (240, 480), 24, 24)
    ink += on_paper(enlarged(right, 192), (240, 480), 24, 264)
    return grey_image(1 - np.clip(ink, 0, 1)), "PNG", {}


RENDERINGS = {  # name: (kind, render); kind: clean, hard (soft, coarse, thick or thin), photo
    "28 px as MNIST": ("clean", as_mnist),
    "28 px dark on white": ("clean", dark_on_white),
    "280 px dark on white": ("clean", scan_280),
    "56 px on a 420x600 page": ("clean", small_on_page),
    "84 px JPEG q30": ("clean", jpeg_q30),
    "112 px coloured ink": ("clean", coloured_ink),
    "112 px transparent PNG": ("clean", transparent),
    "56 px blurred 1 px": ("hard", blurred(1)),
    "56 px blurred 2 px": ("hard", blurred(2)),
    "8x8 shown at 64 px": ("hard", low_resolution(8, 64)),
    "10x10 shown at 60 px": ("hard", low_resolution(10, 60)),
    "14x14 shown at 56 px": ("hard", low_resolution(14, 56)),
    "112 px thick marker": ("hard", thick_marker),
    "112 px thin pen": ("hard", thin_pen),
    "uneven light, noise, JPEG": ("photo", uneven_light_noise),
    "ruled paper": ("photo", ruled_paper),
    "a frame": ("photo", framed),
    "EXIF rotation": ("photo", exif_rotated),
    "two digits side by side": ("photo", two_digits),
}


def render_files(name, x, folder):
    """Write the rendering of every digit in x into folder: the file names, in order."""
    render = RENDERINGS[name][1]
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for index, digit in enumerate(x):
        args = (digit, index, x[(index + 1) % len(x)]) if name == "two digits side by side" \
            else (digit, index)
        image, fmt, options = render(*args)
        names.append(f"{index:05d}.{'jpg' if fmt == 'JPEG' else 'png'}")
        image.save(folder / names[-1], fmt, **options)
    return names


# --- Reading the files --------------------------------------------------------------------------

def predict_files(folder, names, model_dir):
    """`predict --json` on all the files, as a user runs it: one answer dict per file."""
    command = [sys.executable, str(SCRIPT), "predict", "--json", "--model-dir", str(model_dir),
               *names]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    answers = {}
    for line in result.stdout.splitlines():
        answer = json.loads(line)
        answers[answer["file"]] = answer
    missing = [name for name in names if name not in answers]
    if missing:
        raise RuntimeError(f"predict gave no answer for {missing[:3]}...: {result.stderr[-2000:]}")
    return [answers[name] for name in names]


def read_grey(path):
    """The file as grey in [0, 1], upright, transparency on white: what any reader starts from."""
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            image = Image.alpha_composite(Image.new("RGBA", image.size, "white"),
                                          image.convert("RGBA"))
        return np.asarray(image.convert("L"), np.float32) / 255


def plain_recipe(grey):
    """The plain MNIST recipe: ink light on black (the paper is the brighter side when the
    picture's median is bright), cropped to the ink, fitted to a 20x20 box keeping its aspect
    ratio, centre of mass at (14, 14). Nothing else."""
    ink = 1 - grey if np.median(grey) > 0.5 else grey
    ink = np.clip(ink - np.median(ink), 0, None)
    ink = ink / max(ink.max(), 1e-6)
    rows, cols = np.nonzero(ink > 0.1)
    ink = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    scale = 20 / max(ink.shape)
    height, width = (max(1, round(n * scale)) for n in ink.shape)
    digit = np.asarray(Image.fromarray(ink).resize((width, height), Image.Resampling.BILINEAR))
    centre_y, centre_x = ndimage.center_of_mass(digit)
    top = int(np.clip(round(14 - centre_y), 0, 28 - height))
    left = int(np.clip(round(14 - centre_x), 0, 28 - width))
    canvas = np.zeros((28, 28), np.float32)
    canvas[top:top + height, left:left + width] = np.clip(digit, 0, 1)
    return canvas


def plain_recipe_digits(path, two):
    """The recipe's digits of one file; a two-digit file is cut at its middle column first."""
    grey = read_grey(path)
    if not two:
        return [plain_recipe(grey)]
    middle = grey.shape[1] // 2
    return [plain_recipe(grey[:, :middle]), plain_recipe(grey[:, middle:])]


class Classifier:
    """The model's model.tflite on the LiteRT interpreter (the same answers as model.keras)."""

    def __init__(self, model_dir):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(str(Path(model_dir) / "model.tflite"), num_threads=1)
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]

    def digits(self, images, batch=500):
        """Class of each 28x28 float image in [0, 1]."""
        answers = []
        for start in range(0, len(images), batch):
            chunk = np.asarray(images[start:start + batch], np.float32)[..., np.newaxis]
            self.interpreter.resize_tensor_input(self.input, chunk.shape)
            self.interpreter.allocate_tensors()
            self.interpreter.set_tensor(self.input, chunk)
            self.interpreter.invoke()
            answers.extend(self.interpreter.get_tensor(self.output).argmax(axis=1).tolist())
        return np.array(answers)


def ms_per_picture(paths):
    """CPU time of this process (not wall time: the machine may be shared) per picture."""
    from mnist_digits import pictures  # the module measured (main puts the repository on the path)

    start = time.process_time()
    for path in paths:
        try:
            pictures.read_picture(path)
        except ValueError:
            pass
    return 1000 * (time.process_time() - start) / max(len(paths), 1)


def measure(name, x, y, array_answers, classifier, model_dir, folder, timed):
    """One rendering's row."""
    started = time.time()
    two = name == "two digits side by side"
    names = render_files(name, x, folder)
    answers = predict_files(folder, names, model_dir)
    if two:
        expected = np.stack([y, np.roll(y, -1)], axis=1).tolist()
        arrays = np.stack([array_answers, np.roll(array_answers, -1)], axis=1).tolist()
        read = [a.get("digits", [a["digit"]]) if "error" not in a else None for a in answers]
    else:
        expected, arrays = y.tolist(), array_answers.tolist()
        read = [a.get("digit") for a in answers]
    recipe = classifier.digits([d for n in names for d in plain_recipe_digits(folder / n, two)])
    recipe = recipe.reshape(len(names), -1).tolist() if two else recipe.tolist()
    refused = sum(answer is None for answer in read)
    row = {
        "kind": RENDERINGS[name][0],
        "files": len(names),
        "accuracy": float(np.mean([r == e for r, e in zip(read, expected)])),
        "refused": refused,
        "changed": sum(r is not None and r != a for r, a in zip(read, arrays)),
        "plain_recipe_accuracy": float(np.mean([r == e for r, e in zip(recipe, expected)])),
        "ms_per_picture": round(ms_per_picture([folder / n for n in names[:timed]]), 3),
        "example_file": f"{names[0]} ({Image.open(folder / names[0]).size[0]}x"
                        f"{Image.open(folder / names[0]).size[1]})",
    }
    if two:
        row["both_found_in_order"] = float(np.mean([r is not None and len(r) == 2 for r in read]))
    row["wrong_or_refused"] = [i for i, (r, e) in enumerate(zip(read, expected)) if r != e][:50]
    row["seconds"] = round(time.time() - started, 1)
    return row


# --- Results ------------------------------------------------------------------------------------

def markdown(results):
    digits = results.get("digits", "test")
    lines = [
        f"# Reading people's pictures: MNIST's {digits} digits as files, through `predict`",
        "",
        f"{results['files']} {digits} digits per rendering; the model's accuracy on the arrays "
        f"themselves: **{results['arrays_accuracy']:.2%}**. mnist_digits/pictures.py measured: git blob "
        f"`{results['pictures_blob']}`. Command: `{results['command']}`.",
        "",
        "| rendering | kind | accuracy | refused | changed vs arrays | plain recipe | ms per picture |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in results["renderings"].items():
        extra = f" (both found, in order: {row['both_found_in_order']:.2%})" \
            if "both_found_in_order" in row else ""
        lines.append(f"| {name} ({row['example_file'].split(' ')[1][1:-1]}) | {row['kind']} | "
                     f"{row['accuracy']:.2%}{extra} | {row['refused']} | {row['changed']} | "
                     f"{row['plain_recipe_accuracy']:.2%} | {row['ms_per_picture']:.2f} |")
    lines += ["", "Changed: answers other than the model's own answer on the array (refusals "
              "not counted). Plain recipe: crop to the ink, fit 20x20 keeping the aspect ratio, "
              "centre of mass at (14, 14), nothing else, same model. ms per picture: "
              "pictures.read_picture alone, in-process CPU time, on the first "
              f"{results['timed']} files of each rendering.", ""]
    return "\n".join(lines)


def blob_of(path):
    result = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True)
    return result.stdout.strip()[:12]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("MNIST_DATA"),
                        help="the MNIST folder (default: $MNIST_DATA)")
    parser.add_argument("--model-dir", default=str(ROOT / "mnist_digit_recognition_model"))
    parser.add_argument("--digits", choices=["test", "validation"], default="test",
                        help="MNIST's 10,000 test digits, or the 6,000 training digits the "
                             "shipped model held out for validation (never trained on: a "
                             "second set, to check a change tuned on the test digits)")
    parser.add_argument("--limit", type=int, default=10_000, help="the first N digits")
    parser.add_argument("--renderings", nargs="+", choices=RENDERINGS, default=list(RENDERINGS),
                        metavar="NAME", help=f"some of: {', '.join(RENDERINGS)}")
    parser.add_argument("--timed", type=int, default=1000,
                        help="time read_picture on the first N files of each rendering")
    parser.add_argument("--folder", help="where to write the pictures (default: a temporary "
                                         "folder, removed at the end)")
    parser.add_argument("--no-save", action="store_true",
                        help="print only (a run with --limit writes results only with --save-as)")
    parser.add_argument("--save-as", metavar="STEM",
                        help="write benchmarks/results/STEM.json and STEM.md (default: "
                             "pictures, or pictures.validation)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))  # the repository: mnist_digit_recognition and mnist_digits
    import mnist_digit_recognition as mdr
    from mnist_digits import mnist_files, model_files

    arrays = mnist_files.read_mnist_arrays(args.data)
    if args.digits == "test":
        x, y = arrays["x_test"], arrays["y_test"]
    else:  # the training digits the model held out, as its metadata.json says
        settings = model_files.read_metadata(args.model_dir).get("settings", {})
        if not settings.get("validation_split") or settings.get("train_size"):
            raise SystemExit(f"{args.model_dir}: its metadata.json names no held-out digits")
        _, (x, y) = mdr.split_validation(arrays["x_train"], arrays["y_train"],
                                         settings["validation_split"])
    whole = len(x)
    x, y = x[:args.limit], y[:args.limit]
    classifier = Classifier(args.model_dir)
    array_answers = classifier.digits(x.astype(np.float32) / 255)
    stem = args.save_as or ("pictures" if args.digits == "test" else "pictures.validation")
    results_file = RESULTS / f"{stem}.json"
    # a quick run (--limit) leaves the full run's results alone
    save = not args.no_save and (len(x) == whole or args.save_as is not None)
    results = json.loads(results_file.read_text()) if results_file.exists() and save else {}
    if results.get("files") != len(x) or results.get("digits", "test") != args.digits:
        results = {"renderings": {}}
    results.update(files=len(x), digits=args.digits,
                   arrays_accuracy=float(np.mean(array_answers == y)),
                   pictures_blob=blob_of(ROOT / "mnist_digits" / "pictures.py"), timed=min(args.timed, len(x)),
                   command="python benchmarks/pictures.py " + " ".join(argv or sys.argv[1:]))
    with tempfile.TemporaryDirectory(prefix="pictures_benchmark_") as temporary:
        base = Path(args.folder or temporary)
        for name in args.renderings:
            row = measure(name, x, y, array_answers, classifier, args.model_dir,
                          base / name.replace(" ", "_").replace(",", ""), args.timed)
            results["renderings"][name] = row
            print(f"{name}: accuracy {row['accuracy']:.2%}, refused {row['refused']}, changed "
                  f"{row['changed']}, plain recipe {row['plain_recipe_accuracy']:.2%}, "
                  f"{row['ms_per_picture']:.2f} ms ({row['seconds']} s)", flush=True)
            results["renderings"] = {n: results["renderings"][n] for n in RENDERINGS
                                     if n in results["renderings"]}
            if save:
                RESULTS.mkdir(exist_ok=True)
                results_file.write_text(json.dumps(results, indent=1) + "\n")
                (RESULTS / f"{stem}.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
