"""Every published MNIST recipe, run with our script on the full data, against its published figure.

    python benchmarks/recipes.py --data ../shared/data/mnist [--only NAME ...] [--seeds 1 2 3]
    python benchmarks/recipes.py --reuse cnn-bn-aug-adam-15=path/to/a/classic-cnn/model

Each recipe is one command line of mnist_digit_recognition.py, run as a user would (a
subprocess, its model directory in a temporary folder). The table of published and measured
test accuracy, test loss and wall time is printed and written to
benchmarks/results/recipes.json and recipes.md (with --only, the other recipes' earlier
results stay in them). Takes 40 to 75 minutes on 2 CPU cores with one seed (the less where
the CPU has fast bfloat16). `--reuse NAME=MODEL_DIR` takes a recipe's result from a model
directory already trained with exactly its flags
instead of training it again; name a recipe more than once to report several runs of it.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = HERE.parent / "mnist_digit_recognition.py"

# name: (flags, published test accuracy or None, where it was published)
RECIPES = {
    "cnn-bn-aug-adam-15": (
        ["--arch", "classic-cnn", "--epochs", "15", "--batch-size", "32"], 0.9940,
        "CNN with batch norm, dropout and augmentation, Adam, 15 epochs, batch 32"),
    "deep-cnn-rmsprop-aug-20": (
        ["--arch", "deep-cnn", "--optimizer", "rmsprop", "--epochs", "20", "--batch-size", "64"],
        0.9955, "730,602-parameter CNN, RMSprop, augmentation, ReduceLROnPlateau, 20 epochs, "
                "batch 64"),
    # The next three published runs had no learning-rate schedule to steer and trained on all
    # 60,000 images; --validation-split 0 does the same.
    "cnn-bn-5": (
        ["--arch", "classic-cnn", "--no-augmentation", "--epochs", "5", "--batch-size", "64",
         "--validation-split", "0"],
        0.99279, "CNN with batch norm, no augmentation, Adam, 5 epochs, batch 64, all 60,000 "
                 "images"),
    "cnn-no-bn-5": (
        ["--arch", "classic-cnn", "--no-augmentation", "--no-batchnorm", "--epochs", "5",
         "--batch-size", "64", "--validation-split", "0"], 0.99029,
        "CNN without batch norm, no augmentation, Adam, 5 epochs, batch 64, all 60,000 images"),
    "mlp-rmsprop-5": (
        ["--arch", "mlp", "--optimizer", "rmsprop", "--no-augmentation", "--epochs", "5",
         "--batch-size", "128", "--validation-split", "0"], 0.9804,
        "Dense 512 network, RMSprop, 5 epochs, batch 128, all 60,000 images"),
    "mlp-adam-10": (
        ["--arch", "mlp", "--no-augmentation", "--epochs", "10", "--batch-size", "128"], None,
        "Dense 512 network, Adam, 10 epochs, batch 128, validation split (none published)"),
}


def run_recipe(flags, data, seed, folder):
    model_dir = Path(folder) / "model"
    command = [sys.executable, str(SCRIPT), *flags, "--data", str(data), "--seed", str(seed),
               "--model-dir", str(model_dir)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    metadata = json.loads((model_dir / "metadata.json").read_text())
    return {"seed": seed, "date": time.strftime("%Y-%m-%d"),
            "test_accuracy": metadata["test_accuracy"],
            "test_loss": metadata["test_loss"], "wall_seconds": metadata["wall_seconds"],
            "process_seconds": round(time.perf_counter() - started, 1),
            "precision": metadata["precision"], "parameters": metadata["model"]["parameters"],
            "device": metadata["device"]}


def reused_run(flags, model_dir):
    """A finished run's result, if its settings are the recipe's (seed and paths aside)."""
    sys.path.insert(0, str(SCRIPT.parent))
    import mnist_digit_recognition as mdr

    metadata = json.loads((Path(model_dir) / "metadata.json").read_text())
    wanted = mdr.training_settings(mdr.build_train_parser("recipe").parse_args(flags))
    ignored = {"data", "model_dir", "seed", "distribute"}  # how it ran, not what it trained
    different = {key for key, value in wanted.items()
                 if key not in ignored and metadata["settings"].get(key) != value}
    if different:
        raise SystemExit(f"{model_dir} was trained with other settings: {sorted(different)}")
    return {"seed": metadata["settings"]["seed"], "date": metadata["created"][:10],
            "test_accuracy": metadata["test_accuracy"],
            "test_loss": metadata["test_loss"], "wall_seconds": metadata["wall_seconds"],
            "precision": metadata["precision"], "parameters": metadata["model"]["parameters"],
            "device": metadata["device"], "reused": str(model_dir)}


def earlier_results(output):
    """The recipes of an earlier results file whose flags are still the recipe's: an --only
    run replaces its own recipes and keeps these."""
    path = output.with_suffix(".json")
    if not path.exists():
        return {}
    return {name: entry for name, entry in json.loads(path.read_text())["recipes"].items()
            if name in RECIPES and entry["flags"] == RECIPES[name][0]}


def markdown_table(results):
    lines = ["| recipe | command flags | published | measured (per seed) | test loss | wall time |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, entry in results.items():
        runs = entry["runs"]
        published = f"{entry['published']:.3%}" if entry["published"] else "none"
        accuracies = ", ".join(f"{r['test_accuracy']:.2%}" for r in runs)
        losses = ", ".join(f"{r['test_loss']:.4f}" for r in runs)
        minutes = ", ".join(f"{r['wall_seconds'] / 60:.1f} min" for r in runs)
        lines.append(f"| {entry['description']} | `{' '.join(entry['flags'])}` | {published} | "
                     f"{accuracies} | {losses} | {minutes} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("MNIST_DATA"),
                        help="MNIST as for the program's --data (default: $MNIST_DATA)")
    parser.add_argument("--only", nargs="+", choices=sorted(RECIPES), help="run only these")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1], help="one run per seed")
    parser.add_argument("--reuse", nargs="+", default=[], metavar="NAME=MODEL_DIR",
                        help="take these recipes' results from finished model directories "
                             "(a NAME given more than once: one run each)")
    parser.add_argument("--output", default=str(HERE / "results" / "recipes"),
                        help="path prefix of the .json and .md results")
    args = parser.parse_args()

    reuse = {}
    for item in args.reuse:
        name, model_dir = item.split("=", 1)
        reuse.setdefault(name, []).append(model_dir)
    output = Path(args.output)
    results = earlier_results(output) if args.only else {}
    for name in args.only or RECIPES:
        flags, published, description = RECIPES[name]
        runs = [reused_run(flags, model_dir) for model_dir in reuse.get(name, [])]
        for seed in [] if runs else args.seeds:
            with tempfile.TemporaryDirectory() as folder:
                runs.append(run_recipe(flags, args.data, seed, folder))
            print(f"{name} seed {seed}: {runs[-1]['test_accuracy']:.2%} "
                  f"(published {published or 'none'}), {runs[-1]['wall_seconds']:.0f} s",
                  flush=True)
        results[name] = {"description": description, "flags": flags, "published": published,
                         "runs": runs}

    results = {name: results[name] for name in RECIPES if name in results}
    table = markdown_table(results)
    print("\n" + table)
    output.parent.mkdir(parents=True, exist_ok=True)
    runs = [run for entry in results.values() for run in entry["runs"]]
    dates = sorted({run["date"] for run in runs})
    machines = sorted({run["device"] for run in runs})
    stamp = {"dates": dates, "machines": machines}
    output.with_suffix(".json").write_text(json.dumps({**stamp, "recipes": results}, indent=2) + "\n")
    when = f"{dates[0]} to {dates[-1]}" if len(dates) > 1 else "".join(dates)
    output.with_suffix(".md").write_text(f"Measured {when} on {', '.join(machines)}.\n\n{table}\n")


if __name__ == "__main__":
    main()
