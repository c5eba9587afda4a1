"""The shipped network's view of every cached set of marks: 128 penultimate features (the Flatten
output), the 10 logits (features @ W + b of the Dense "probabilities" layer, before its softmax),
and the probabilities model.keras itself returns.

    python features.py            # every cache/digits_*.npz and cache/neg_*.npz -> cache/feat_*.npz
"""

import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, MODEL, N_TRAIN, mnist  # noqa: E402


def load_network(path=MODEL):
    """(model, feature model, W, b): keras.Model(model.inputs, Flatten output) and the last
    Dense layer's weights."""
    import keras

    model = keras.models.load_model(path)
    flatten = next(layer for layer in model.layers if type(layer).__name__ == "Flatten")
    features = keras.Model(model.inputs, [flatten.output, model.get_layer("probabilities").output])
    W, b = model.get_layer("probabilities").get_weights()
    return model, features, W, b


def network_view(feature_model, W, b, marks, batch=1000):
    """(features (N, 128), logits (N, 10), probabilities (N, 10)) of marks (N, 28, 28)."""
    f, p = feature_model.predict(marks[..., np.newaxis].astype(np.float32), batch_size=batch,
                                 verbose=0)
    return f, f @ W + b, p


def main():
    _, feature_model, W, b = load_network()
    data = mnist()
    for name, x in (("arrays_test", data["x_test"]), ("arrays_validation", data["x_train"][N_TRAIN:])):
        if not (CACHE / f"feat_{name}.npz").exists():  # the arrays themselves, for their accuracy
            f, logits, p = network_view(feature_model, W, b, x.astype(np.float32) / 255)
            np.savez(CACHE / f"feat_{name}.npz", features=f, logits=logits, probabilities=p)
    for path in sorted(CACHE.glob("digits_*.npz")) + sorted(CACHE.glob("neg_*.npz")):
        out = CACHE / f"feat_{path.stem}.npz"
        if out.exists() and out.stat().st_mtime > path.stat().st_mtime:
            continue
        data = np.load(path)
        marks = data["marks"]
        shape = marks.shape[:-2]
        f, logits, p = network_view(feature_model, W, b, marks.reshape(-1, 28, 28))
        gap = np.abs(np.exp(logits - logits.max(1, keepdims=True)) /
                     np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True) - p).max()
        np.savez(out, features=f.reshape(*shape, -1), logits=logits.reshape(*shape, -1),
                 probabilities=p.reshape(*shape, -1))
        print(f"{path.name}: {marks.reshape(-1, 28, 28).shape[0]} marks; softmax(logits) vs "
              f"model output, largest difference {gap:.2e}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
