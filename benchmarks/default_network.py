"""The study that picks the default network: candidates trained as the default command trains.

    python benchmarks/default_network.py --data ../shared/data/mnist --candidates NAME... --seeds 1 2 3
    python benchmarks/default_network.py --report

Each run trains one candidate on the full data (54,000 images, 6,000 held out for the
learning-rate schedule) for 15 epochs at batch 32 through the program's own `train()`, and
scores the 10,000 test images after every epoch. That per-epoch test accuracy is only
observed, never fed back into training. Each run is its own process and is written to
benchmarks/results/default_network/NAME-seedN.json the moment it ends (and NAME-seedN.partial.json
after each epoch), so a study cut off mid-way keeps what it measured; runs already on disk are
skipped. `--report` writes the table of all runs to benchmarks/results/default_network.md.
A run takes 20 to 40 minutes on 2 CPU cores; screen on one seed, confirm on three.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "default_network"
sys.path.insert(0, str(HERE.parent))

# name: (what differs from the default command's recipe, what the candidate asks). The
# default command itself ("default") runs through the program's own train_evaluate_save, as a user
# runs it, and keeps its model directory in benchmarks/results/default_network/models/.
CANDIDATES = {
    "cnn-5x5-d0.4": ({"strided_kernel": 5}, "the starting point: C. Deotte's network, 5x5 strided convolutions, "
                         "dropout 0.4"),
    "cnn-3x3-d0.4": ({"strided_kernel": 3}, "3x3 strided convolutions: fewer multiply-adds"),
    "cnn-5x5-d0.25": ({"strided_kernel": 5, "conv_dropout": 0.25, "dense_dropout": 0.25}, "lighter dropout"),
    "cnn-5x5-d0.4-exp": ({"strided_kernel": 5, "lr_decay": 0.85, "final_halvings": 0},
                         "learning rate x0.85 per epoch (under ReduceLROnPlateau) instead of "
                         "halvings over the last third (retired: the recipe no longer has "
                         "lr_decay; its result is kept)"),
    "classic-literal": ({"arch": "classic-cnn", "augmentation_engine": "imagedatagenerator"},
                        "the published 99.40% recipe as published: classic-cnn, Keras' "
                        "ImageDataGenerator, float32"),
    "default-3x3": ({"strided_kernel": 3}, "the default command until 2026-12-01: 3x3 strided "
                    "convolutions, Keras' batch-norm layer (rerun, it trains as cnn-3x3-d0.4)"),
    "default-dropout-from-epoch-1": ({"dropout_from_epoch": 1}, "the default command until "
                                     "2026-12-02: dropout from the first step (these runs: the "
                                     "program's own, commit c2970f6)"),
    "default": ({}, "the default command: python mnist_digit_recognition.py --seed N (5x5 "
                    "strided convolutions, trained with the fused batch-norm kernel, no "
                    "dropout in the first epoch)"),
    "default-no-batchnorm": ({"batchnorm": False}, "the default command with --no-batchnorm"),
    "default-no-batchnorm-dropout-from-epoch-1": ({"batchnorm": False, "dropout_from_epoch": 1},
                                                  "the same until 2026-12-02 (commit c2970f6)"),
}
PROGRAM_RUNS = {"default": [], "default-no-batchnorm": ["--no-batchnorm"]}  # through train_evaluate_save
TARGET = 0.9940  # the published recipe's final test accuracy: when does each run pass it?


def build_candidate(mdr, recipe, strided_kernel=None, dtype="float32", fused_batchnorm=False):
    """The recipe's network, compiled, with other kernels in its strided convolutions if asked."""
    from mnist_digits import hardware

    model = mdr.build_model_for(recipe, dtype, fused_batchnorm)
    if strided_kernel:
        config = model.get_config()
        for layer in config["layers"]:
            if tuple(layer["config"].get("strides", (1, 1))) == (2, 2):
                layer["config"]["kernel_size"] = (strided_kernel, strided_kernel)
        model = mdr.keras.Sequential.from_config(
            config, custom_objects={"FusedBatchNormalization": hardware.fused_batchnorm_layer()})
    return mdr.compile_model(model, recipe)


def run_one(name, seed, data):
    """Train one candidate with one seed in this process; write its result file."""
    import dataclasses

    import numpy as np

    import mnist_digit_recognition as mdr

    from mnist_digits import hardware, mnist_files

    options, _ = CANDIDATES[name]
    if "lr_decay" in options:
        sys.exit(f"{name} is retired: the recipe no longer has lr_decay")
    partial = RESULTS / f"{name}-seed{seed}.partial.json"
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=HERE, text=True,
                            capture_output=True).stdout.strip()
    result = {"candidate": name, "seed": seed, "options": options, "date": time.strftime("%Y-%m-%d"),
              "device": hardware.describe_device(), "versions": hardware.library_versions(),
              "commit": commit, "epochs": []}
    arrays = mnist_files.read_mnist_arrays(data)
    (x_train, y_train), (x_test, y_test) = mdr.load_mnist(arrays=arrays)

    def observe_test_accuracy(epoch, logs):
        """Scores the test set after each epoch and records it; training never sees it."""
        started = time.perf_counter()
        predicted = observer.model.predict(x_test, batch_size=500, verbose=0).argmax(axis=1)
        result["epochs"].append({
            "epoch": epoch + 1, "test_accuracy": float(np.mean(predicted == y_test)),
            "test_seconds": round(time.perf_counter() - started, 2),
            **{key: float(value) for key, value in (logs or {}).items()}})
        write_json(partial, result)

    observer = mdr.keras.callbacks.LambdaCallback(on_epoch_end=observe_test_accuracy)
    started = time.perf_counter()
    if name in PROGRAM_RUNS:
        model_dir = RESULTS / "models" / f"{name}-seed{seed}"
        args = mdr.parse_flags("train", ["--seed", str(seed), "--data", str(data), "--model-dir",
                                         str(model_dir), *PROGRAM_RUNS[name]])
        metadata = mdr.train_evaluate_save(args, hardware.make_strategy("none"),
                                           callbacks=[observer])
        result.update(parameters=metadata["model"]["parameters"], precision=metadata["precision"],
                      train_images=metadata["data"]["train_images"], model_dir=str(model_dir),
                      test_loss=metadata["test_loss"], history=metadata["history"])
    else:
        keys = {field.name for field in dataclasses.fields(mdr.Recipe)}
        recipe = mdr.Recipe(seed=seed, **{k: v for k, v in options.items() if k in keys})
        mdr.keras.utils.set_random_seed(seed)  # as the program's --seed does
        mdr.tf.config.experimental.enable_op_determinism()
        model = build_candidate(mdr, recipe, options.get("strided_kernel"))
        result["parameters"] = model.count_params()
        result["history"] = mdr.train(model, x_train, y_train, recipe, verbose=2,
                                      callbacks=[observer])
        result["train_images"] = len(mdr.split_validation(x_train, y_train, 0.1)[0][0])
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    result["test_accuracy"] = result["epochs"][-1]["test_accuracy"]
    write_json(RESULTS / f"{name}-seed{seed}.json", result)
    partial.unlink(missing_ok=True)
    print(f"{name} seed {seed}: {result['test_accuracy']:.2%} in "
          f"{result['wall_seconds'] / 60:.1f} min", flush=True)


def write_json(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(temporary, path)


def summarise(run):
    epochs = run["epochs"]
    # the program's own history times each epoch; the candidates' observer saw Keras' timing
    training_seconds = [e.get("epoch_seconds") or h["epoch_seconds"]
                        for e, h in zip(epochs, run.get("history") or epochs)]
    elapsed = 0.0
    to_target = None
    for e, seconds in zip(epochs, training_seconds):
        elapsed += seconds
        if to_target is None and e["test_accuracy"] >= TARGET:
            to_target = (e["epoch"], elapsed)
    median = sorted(training_seconds)[len(training_seconds) // 2]
    return {"final": run["test_accuracy"], "best": max(e["test_accuracy"] for e in epochs),
            "train_accuracy": epochs[-1].get("accuracy"), "to_target": to_target,
            "training_minutes": sum(training_seconds) / 60,
            "images_per_second": run["train_images"] / median}


def machine(run):
    """"Intel Xeon, bfloat16": the CPU's maker and family, and the precision trained in (the
    candidates other than the program's own runs train in float32)."""
    words = run["device"].removeprefix("CPU: ").replace("(R)", "").split()
    precision = run.get("precision", "float32").removeprefix("mixed_")
    return f"{' '.join(words[:2])}, {precision}"


def report():
    runs = [json.loads(path.read_text()) for path in sorted(RESULTS.glob("*-seed*.json"))
            if not path.name.endswith(".partial.json")]
    lines = ["| candidate | seed | parameters | test accuracy (epoch 15) | best epoch | "
             "train accuracy | first >= 99.40% | training time | images/s | machine | date |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    by_candidate = {}
    for run in sorted(runs, key=lambda r: (list(CANDIDATES).index(r["candidate"]), r["seed"])):
        s = summarise(run)
        by_candidate.setdefault(run["candidate"], []).append(s["final"])
        target = (f"epoch {s['to_target'][0]}, {s['to_target'][1] / 60:.1f} min"
                  if s["to_target"] else "never")
        lines.append(f"| {run['candidate']} | {run['seed']} | {run['parameters']:,} | "
                     f"{s['final']:.2%} | {s['best']:.2%} | {s['train_accuracy']:.2%} | {target} | "
                     f"{s['training_minutes']:.1f} min | {s['images_per_second']:.0f} | "
                     f"{machine(run)} | {run['date']} |")
    lines += ["", "| candidate | runs | mean test accuracy | lowest | what it asks |",
              "| --- | --- | --- | --- | --- |"]
    for name, finals in by_candidate.items():
        lines.append(f"| {name} | {len(finals)} | {sum(finals) / len(finals):.2%} | "
                     f"{min(finals):.2%} | {CANDIDATES[name][1]} |")
    machines = sorted({run["device"] for run in runs})
    text = (f"Per-epoch test accuracy is observed only. Machines: {', '.join(machines)}.\n\n"
            + "\n".join(lines) + "\n")
    (HERE / "results" / "default_network.md").write_text(text)
    print(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("MNIST_DATA"),
                        help="MNIST as for the program's --data (default: $MNIST_DATA)")
    parser.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=[])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--again", action="store_true", help="rerun runs already on disk")
    parser.add_argument("--report", action="store_true", help="write the table of all runs")
    parser.add_argument("--run", nargs=2, metavar=("NAME", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run_one(args.run[0], int(args.run[1]), args.data)
        return
    for name in args.candidates:
        for seed in args.seeds:
            if (RESULTS / f"{name}-seed{seed}.json").exists() and not args.again:
                print(f"{name} seed {seed}: already measured, skipped")
                continue
            command = [sys.executable, __file__, "--run", name, str(seed)]
            if args.data:
                command += ["--data", args.data]
            subprocess.run(command, check=True,
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if args.report or args.candidates:
        report()


if __name__ == "__main__":
    main()
