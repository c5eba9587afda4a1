"""The picture reading (mnist_digits/pictures.py) on MNIST's 10,000 test digits written as files people have.

    python benchmarks/pictures.py --data ../shared/data/mnist [--limit 300] [--renderings NAME ...]

Every test digit is rendered as a file in each rendering below (in a temporary folder, or
--folder), and each rendering's files are read by `predict --json` in one subprocess, exactly
as a user runs it. Per rendering: accuracy; files refused; answers changed against the model's
answers on the arrays themselves; the plain MNIST recipe's accuracy on the same files (crop to
the ink, fit a 20x20 box keeping the aspect ratio, centre of mass at (14, 14), nothing else,
then the same model); and milliseconds per picture of pictures.read_picture alone, in this
process (CPU time, on the first --timed files).
For "two digits" a file holds test digits i and i+1 ("three": i, i+2 too): it is right when all
are found, in order, and read correctly. A page on a table is an 800x600 photo; a 1200x900 one
is timed on the first 100 digits. Results go to
benchmarks/results/pictures.json and pictures.md (with --renderings, the other renderings'
earlier results stay in them; a run with --limit writes them only under --save-as STEM).
The 19 renderings before issue 33 take about 20 minutes on 2 CPU cores (the picture reading
before issue 21 took an hour); its six about 60 more (a page row, 800x600 photos, 20 minutes).
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
from PIL import Image, ImageOps
from scipy import ndimage

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCRIPT = ROOT / "mnist_digit_recognition.py"
RESULTS = HERE / "results"

sys.path.insert(0, str(HERE))  # renderings.py beside this file, run as a script or imported
from renderings import DIGITS_PER_FILE, RENDERINGS, page_on_table, render_files  # noqa: E402


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


def plain_recipe_digits(path, count):
    """The recipe's digits of one file; a file of `count` digits is cut into as many equal
    widths first."""
    grey = read_grey(path)
    edges = np.linspace(0, grey.shape[1], count + 1).round().astype(int)
    return [plain_recipe(grey[:, start:stop]) for start, stop in zip(edges, edges[1:])]


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


LARGE_PAGE = (1200, 900)  # the limit: a 1200 px photo of a page read in 30 ms


def large_page_ms(x, folder, count=100):
    """ms per picture of pages on a dark table photographed at LARGE_PAGE (the first count
    digits: the rows' photos are smaller, for the benchmark's time)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, digit in enumerate(x[:count]):
        image, fmt, options = page_on_table(digit, index, False, LARGE_PAGE)
        paths.append(folder / f"{index:05d}.jpg")
        image.save(paths[-1], fmt, **options)
    return round(ms_per_picture(paths), 3)


def measure(name, x, y, array_answers, classifier, model_dir, folder, timed):
    """One rendering's row."""
    started = time.time()
    count = DIGITS_PER_FILE.get(name, 1)
    names = render_files(name, x, folder)
    answers = predict_files(folder, names, model_dir)
    if count > 1:  # digits i, i+1 (, i+2): all found, in order, and read right
        expected = np.stack([np.roll(y, -k) for k in range(count)], axis=1).tolist()
        arrays = np.stack([np.roll(array_answers, -k) for k in range(count)], axis=1).tolist()
        read = [a.get("digits", [a["digit"]]) if "error" not in a else None for a in answers]
    else:
        expected, arrays = y.tolist(), array_answers.tolist()
        read = [a.get("digit") for a in answers]
    recipe = classifier.digits([d for n in names for d in plain_recipe_digits(folder / n, count)])
    recipe = recipe.reshape(len(names), -1).tolist() if count > 1 else recipe.tolist()
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
    if count > 1:
        row["all_found_in_order"] = float(np.mean([r is not None and len(r) == count for r in read]))
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
        f"themselves: **{results['arrays_accuracy']:.2%}**. Measured: mnist_digits/pictures.py, git blob "
        f"`{results['pictures_blob']}`; page.py, `{results.get('page_blob')}`. Command: "
        f"`{results['command']}`." + (f" {results['machine']}." if "machine" in results else ""),
        "",
        "| rendering | kind | accuracy | refused | changed vs arrays | plain recipe | ms per picture |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in results["renderings"].items():
        extra = f" (all found: {row['all_found_in_order']:.2%})" \
            if "all_found_in_order" in row else ""
        lines.append(f"| {name} ({row['example_file'].split(' ')[1][1:-1]}) | {row['kind']} | "
                     f"{row['accuracy']:.2%}{extra} | {row['refused']} | {row['changed']} | "
                     f"{row['plain_recipe_accuracy']:.2%} | {row['ms_per_picture']:.2f} |")
    lines += ["", "Changed: answers other than the model's own answer on the array (refusals "
              "not counted). Plain recipe: crop to the ink, fit 20x20 keeping the aspect ratio, "
              "centre of mass at (14, 14), nothing else, same model. ms per picture: "
              "pictures.read_picture alone, in-process CPU time, on the first "
              f"{results['timed']} files of each rendering."]
    if "large_page_ms" in results:
        lines.append(f"A {LARGE_PAGE[0]}x{LARGE_PAGE[1]} photo of a page on a dark table "
                     f"(the first 100 digits): {results['large_page_ms']:.2f} ms per picture.")
    lines.append("")
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
                   pictures_blob=blob_of(ROOT / "mnist_digits" / "pictures.py"),
                   page_blob=blob_of(ROOT / "mnist_digits" / "page.py"), timed=min(args.timed, len(x)),
                   command="python benchmarks/pictures.py " + " ".join(argv or sys.argv[1:]))
    with tempfile.TemporaryDirectory(prefix="pictures_benchmark_") as temporary:
        base = Path(args.folder or temporary)
        large_page_timed = False
        for name in args.renderings:
            row = measure(name, x, y, array_answers, classifier, args.model_dir,
                          base / name.replace(" ", "_").replace(",", ""), args.timed)
            results["renderings"][name] = row
            print(f"{name}: accuracy {row['accuracy']:.2%}, refused {row['refused']}, changed "
                  f"{row['changed']}, plain recipe {row['plain_recipe_accuracy']:.2%}, "
                  f"{row['ms_per_picture']:.2f} ms ({row['seconds']} s)", flush=True)
            results["renderings"] = {n: results["renderings"][n] for n in RENDERINGS
                                     if n in results["renderings"]}
            if RENDERINGS[name][0] == "page" and not large_page_timed:
                results["large_page_ms"] = large_page_ms(x, base / "large_page")
                large_page_timed = True
                print(f"a {LARGE_PAGE[0]}x{LARGE_PAGE[1]} photo of a page: "
                      f"{results['large_page_ms']:.2f} ms", flush=True)
            if save:
                RESULTS.mkdir(exist_ok=True)
                results_file.write_text(json.dumps(results, indent=1) + "\n")
                (RESULTS / f"{stem}.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
