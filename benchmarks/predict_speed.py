"""How fast `predict` and `serve` answer, and whether LiteRT gives the digits TensorFlow gives.

    python benchmarks/predict_speed.py --data ../shared/data/mnist [--script OTHER/mnist_digit_recognition.py]

Four measurements, each as a user meets it:
- start-up: `predict` on one picture in a fresh process, beside `python -c "import tensorflow"`,
  taking turns for --rounds rounds (the median of each; their ratio is what to compare between
  machines);
- 1,000 pictures: one `predict` process reading 1,000 PNG files;
- serve: the time from starting `serve` to its first /healthz answer, then 16 client threads
  sending 1,600 POST /predict requests (a new connection each) of 1,600 different 28 px MNIST
  PNGs, then of 1,600 280 px drawings as the page sends them (white strokes on black, 280x280
  PNG); every answer is checked against the digit the same picture gets alone, after;
- agreement: model.tflite on LiteRT against model.keras on TensorFlow, all 10,000 test images.
`--script` measures another checkout's script for the first three (the agreement needs ours).
Writes benchmarks/results/predict_speed.json.
"""

import argparse
import http.client
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mnist_digit_recognition as mdr  # noqa: E402
from mnist_digits import classifier, mnist_files, model_files

RESULTS = ROOT / "benchmarks" / "results" / "predict_speed.json"


def seconds_to_run(*command):
    """A command's time; it may exit 1 (predict does when a picture holds no digit it finds)."""
    start = time.perf_counter()
    status = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    if status not in (0, 1):
        sys.exit(f"{command[:4]} ... failed with exit status {status}")
    return time.perf_counter() - start


def png_bytes(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def drawing(digit):
    """An MNIST digit as the drawing page sends one: white on black, 280x280."""
    return np.asarray(Image.fromarray(digit).resize((280, 280), Image.Resampling.BILINEAR))


def start_up(script, picture, model_dir, rounds):
    tensorflow, predict = [], []
    for _ in range(rounds):
        tensorflow.append(seconds_to_run(sys.executable, "-c", "import tensorflow"))
        predict.append(seconds_to_run(sys.executable, script, "predict", "--model-dir",
                                      model_dir, picture))
    tf_median, predict_median = statistics.median(tensorflow), statistics.median(predict)
    return {"import_tensorflow_s": round(tf_median, 3), "predict_one_s": round(predict_median, 3),
            "ratio": round(predict_median / tf_median, 3), "rounds": rounds}


def serve_load(script, model_dir, bodies, clients=16, requests=1600):
    """Start `serve`, time its first /healthz, then send the bodies from many threads."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, script, "serve", "--port", "0", "--model-dir",
                                model_dir], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    try:
        port = int(re.search(r":(\d+)/", process.stdout.readline())[1])
        while True:
            try:
                if request(port, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.01)
        health_s = time.perf_counter() - started
        figures = {"healthz_after_start_s": round(health_s, 3)}
        for kind, kind_bodies in bodies.items():
            def send(i):
                begin = time.perf_counter()
                status, answer = request(port, "POST", "/predict", kind_bodies[i % len(kind_bodies)])
                return answer["digit"] if status == 200 else "refused", time.perf_counter() - begin

            begin = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                results = list(pool.map(send, range(requests)))
            seconds = time.perf_counter() - begin
            # The answers to check against: each picture alone, after the load.
            expected = [request(port, "POST", "/predict", body)[1]["digit"] for body in kind_bodies]
            results = [(digit == expected[i % len(kind_bodies)], latency)
                       for i, (digit, latency) in enumerate(results)]
            latencies = np.array([latency for _, latency in results]) * 1000
            figures[kind] = {"requests": requests, "clients": clients,
                             "requests_per_second": round(requests / seconds, 1),
                             "p50_ms": round(float(np.percentile(latencies, 50)), 1),
                             "p99_ms": round(float(np.percentile(latencies, 99)), 1),
                             "right": sum(ok for ok, _ in results)}
        return figures
    finally:
        process.terminate()
        process.wait(30)


def request(port, method, path, body=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body, {"Content-Type": "image/png"} if body else {})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def agreement(model_dir, x_test):
    """model.tflite on LiteRT (load_classifier) against model.keras, on every test image."""
    import ai_edge_litert  # noqa: F401  (without it, load_classifier would run model.keras)

    images = mnist_files.normalize_images(x_test)
    litert = classifier.load_classifier(model_dir)(images)
    keras = mdr.load_model(model_dir).predict(images, batch_size=500, verbose=0)
    return {"images": len(images), "same_digits": int(np.sum(litert.argmax(1) == keras.argmax(1))),
            "max_probability_difference": float(np.abs(litert - keras).max())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("MNIST_DATA"))
    parser.add_argument("--script", default=str(ROOT / "mnist_digit_recognition.py"))
    parser.add_argument("--model-dir", default=str(ROOT / model_files.DEFAULT_MODEL_DIR))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-agreement", action="store_true")
    args = parser.parse_args()
    x_test = mnist_files.read_mnist_arrays(args.data)["x_test"]
    results = {"script": args.script, "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory() as folder:
        files = []
        for i, digit in enumerate(x_test[:1000]):
            files.append(Path(folder) / f"{i}.png")
            files[-1].write_bytes(png_bytes(digit))
        results["start_up"] = start_up(args.script, str(files[0]), args.model_dir, args.rounds)
        print(json.dumps(results["start_up"]), flush=True)
        results["predict_1000_files_s"] = round(seconds_to_run(
            sys.executable, args.script, "predict", "--model-dir", args.model_dir, *files), 2)
        print("1,000 files:", results["predict_1000_files_s"], "s", flush=True)
    # As many pictures as requests, each sent once: no picture the server has read before.
    bodies = {"28 px PNG": [png_bytes(digit) for digit in x_test[:1600]],
              "280 px drawing": [png_bytes(drawing(digit)) for digit in x_test[:1600]]}
    results["serve"] = serve_load(args.script, args.model_dir, bodies)
    print(json.dumps(results["serve"]), flush=True)
    if not args.skip_agreement:
        results["agreement"] = agreement(args.model_dir, x_test)
        print(json.dumps(results["agreement"]), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.write_text(json.dumps(previous + [results], indent=1) + "\n")


if __name__ == "__main__":
    main()
