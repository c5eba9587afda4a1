"""Training throughput of the default command against the literal published recipe, side by side.

    python benchmarks/throughput.py --data ../shared/data/mnist [--rounds 4] [--steps 100]

Each configuration is measured in a process of its own, as a user's training runs: built,
warmed up (graph tracing, first batches), then timed over `steps` training steps. The
configurations take turns, round after round, and each keeps its best round, so that a slow
spell of the machine hits all of them alike. (In one shared process, one of the configurations
ran 35% slower than alone, whichever it was: an artefact of sharing, not of the network.)
Prints a table of training images per second and the ratio to the literal recipe (Keras'
ImageDataGenerator.flow + model.fit, float32, batch 32), then the inference speed of a saved
model on the 10,000 test images and its one-image latency. Writes everything to
benchmarks/results/throughput.json.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mnist_digit_recognition as mdr  # noqa: E402
from mnist_digits import classifier, hardware, interruption, model_files

sys.path.insert(0, str(Path(__file__).resolve().parent))
from default_network import build_candidate  # noqa: E402

# name, recipe changes, strided kernel of the cnn (None: as built), mixed precision (None: auto),
# batch norm (fused: TensorFlow's kernel, as the program trains; keras: Keras' own layer). The
# first is the literal published recipe, the second the default command.
CONFIGURATIONS = [
    ("literal: classic-cnn, Keras' ImageDataGenerator, float32, batch 32",
     {"arch": "classic-cnn", "augmentation_engine": "imagedatagenerator"}, None, False, "keras"),
    ("default: cnn, augmentation in tf.data, auto precision, batch 32", {}, None, None, "fused"),
    ("the default in float32 (--no-mixed-precision)", {}, None, False, "fused"),
    ("the default in float32, Keras' batch-norm layer", {}, None, False, "keras"),
    ("cnn with 3x3 strided convolutions, float32", {}, 3, False, "fused"),
    ("cnn without batch norm, float32", {"batchnorm": False}, None, False, "fused"),
    ("classic-cnn, augmentation in tf.data, float32", {"arch": "classic-cnn"}, None, False, "fused"),
    ("the default with --no-augmentation", {"augment": False}, None, None, "fused"),
    ("the default with --batch-size 128", {"batch_size": 128}, None, None, "fused"),
]


def make_run(x, y, changes, strided_kernel, mixed_precision, batchnorm, seed=0):
    """A compiled model, an endless batch source and the precision of one configuration."""
    recipe = mdr.Recipe(**changes)
    policy = hardware.choose_precision(mixed_precision)
    model = build_candidate(mdr, recipe, strided_kernel, policy, batchnorm == "fused")
    if recipe.augment and recipe.augmentation_engine == "imagedatagenerator":
        data = mdr.make_image_data_generator(recipe).flow(x, y, batch_size=recipe.batch_size,
                                                          seed=seed)
    else:
        augmenter = mdr.make_augmenter(recipe) if recipe.augment else None
        data = mdr.make_train_dataset(x, y, recipe.batch_size, augmenter,
                                      interruption.epoch_seeds(seed, 1)).repeat()
    return model, data, policy, recipe.batch_size


def images_per_second(model, data, steps, batch_size):
    start = time.perf_counter()
    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    return steps * batch_size / (time.perf_counter() - start)


def measure_one(index, x, y, steps):
    """Train configuration `index` in this process: (precision, images per second)."""
    model, data, policy, batch_size = make_run(x, y, *CONFIGURATIONS[index][1:])
    images_per_second(model, data, 20, batch_size)  # warm-up: tracing, the first batches
    return policy, images_per_second(model, data, steps, batch_size)


def measure_training(data, rounds, steps):
    best, precision = {}, {}
    for round_number in range(rounds):
        for index, (name, *_) in enumerate(CONFIGURATIONS):
            command = [sys.executable, __file__, "--one", str(index), "--steps", str(steps)]
            answer = subprocess.run(command + (["--data", data] if data else []), check=True,
                                    capture_output=True, text=True,
                                    env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
            precision[name], speed = json.loads(answer.stdout.splitlines()[-1])
            best[name] = max(best.get(name, 0.0), speed)
            print(f"round {round_number + 1}: {name}: {speed:,.0f} images/s", flush=True)
    literal = best[CONFIGURATIONS[0][0]]
    return [{"configuration": name, "precision": precision[name],
             "images_per_second": round(speed), "ratio_to_literal": round(speed / literal, 3)}
            for name, speed in best.items()]


def measure_augmentation_alone(x, y, batches=300):
    """Augmented images per second each engine produces with no training beside it, on one
    core for ImageDataGenerator (a Python loop) and in tf.data's threads for the layers engine:
    the ceiling each engine puts on an accelerator that trains faster than that."""
    generator = mdr.make_image_data_generator().flow(x, y, batch_size=32, seed=0)
    dataset = iter(mdr.make_train_dataset(x, y, 32, mdr.make_augmenter(),
                                          interruption.epoch_seeds(0, 1)).repeat())
    engines = {"imagedatagenerator": lambda i: generator[i % len(generator)],
               "layers": lambda i: next(dataset)}
    speeds = {}
    for name, next_batch in engines.items():
        next_batch(0)
        seconds = timed(lambda: [next_batch(i) for i in range(batches)])
        speeds[name] = round(batches * 32 / seconds)
    return speeds


def measure_inference(x_test):
    """Scores of a float32 model saved and loaded as a user would, on the 10,000 test images."""
    with tempfile.TemporaryDirectory() as folder:
        model = mdr.compile_model(mdr.build_model("cnn"))  # the default network
        model_files.save_model_dir(model, Path(folder) / "model", {})
        model = mdr.load_model(Path(folder) / "model")
        model.predict(x_test[:1000], batch_size=classifier.EVAL_BATCH_SIZE, verbose=0)  # warm-up
        batch_seconds = min(timed(lambda: model.predict(x_test, batch_size=classifier.EVAL_BATCH_SIZE,
                                                        verbose=0)) for _ in range(3))
        one = x_test[:1]
        model(one, training=False)
        latencies = sorted(timed(lambda: model(one, training=False)) for _ in range(200))
    return {"test_images_per_second": round(len(x_test) / batch_seconds),
            "one_image_latency_ms_median": round(1000 * latencies[len(latencies) // 2], 2)}


def timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("MNIST_DATA"),
                        help="as the program's --data (default: $MNIST_DATA)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds; best counts")
    parser.add_argument("--steps", type=int, default=100, help="training steps per measurement")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "throughput.json"))
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # one configuration's process
    args = parser.parse_args()

    (x_train, y_train), (x_test, _) = mdr.load_mnist(args.data)
    x, y = x_train[:20000], y_train[:20000]
    if args.one is not None:
        print(json.dumps(measure_one(args.one, x, y, args.steps)))
        return
    training = measure_training(args.data, args.rounds, args.steps)
    augmentation = measure_augmentation_alone(x, y)
    inference = measure_inference(x_test)

    width = max(len(row["configuration"]) for row in training)
    print(f"\n{'configuration':<{width}}  {'precision':<15} {'images/s':>9}  vs literal")
    for row in training:
        print(f"{row['configuration']:<{width}}  {row['precision']:<15} "
              f"{row['images_per_second']:>9,}  {row['ratio_to_literal']:.2f}x")
    print(f"\naugmentation alone, images/s: ImageDataGenerator {augmentation['imagedatagenerator']:,}"
          f", layers engine {augmentation['layers']:,}")
    print(f"inference, saved float32 model: {inference['test_images_per_second']:,} test "
          f"images/s; one image: {inference['one_image_latency_ms_median']} ms (median)")

    result = {"machine": hardware.describe_device(), "platform": platform.platform(),
              "versions": hardware.library_versions(), "rounds": args.rounds, "steps": args.steps,
              "date": time.strftime("%Y-%m-%d"), "training": training,
              "augmentation_alone_images_per_second": augmentation, "inference": inference}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
