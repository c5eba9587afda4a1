"""Experiment: the feature heads of evaluate.py with seven shape measures of the mark added
(geometry.py: ink box height, width, ratio, ink, holes, pieces, ends). Same protocol and table.

    python exp_geom.py [--rates 0.001 0.0015] [--out results/geometry]
"""
import argparse, json, sys
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
import evaluate as ev  # noqa: E402
from common import CACHE, HERE  # noqa: E402


def geometry(view):
    return view["geom"]


class GeometryHead(ev.Head):
    def __init__(self, hidden, geometry_only=False, **kw):
        super().__init__(hidden, **kw)
        self.geometry_only = geometry_only
        self.name = (f"MLP {hidden}" if hidden else "logistic") + (" geometry only" if geometry_only else " +geometry")

    def extra(self):
        return None if self.geometry_only else geometry

    def fit(self, data, kinds):
        if self.geometry_only:
            data = {k: dict(v, features=v["geom"]) if isinstance(v, dict) and "geom" in v else v for k, v in data.items()}
        return super().fit(data, kinds)

    def score(self, view, set_name):
        if self.geometry_only:
            x = view["geom"]
        else:
            x = np.concatenate([view["features"], view["geom"]], -1)
        shape = x.shape[:-1]
        flat = (x.reshape(-1, x.shape[-1]) - self.mean) / self.std
        return self.forward(self.layers, flat)[0].reshape(shape)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", type=float, nargs="+", default=[0.001, 0.0015])
    parser.add_argument("--out", default="results/geometry")
    args = parser.parse_args()
    data = ev.load_all()
    for name, view in data.items():
        stem = {"train": "digits_train", "validation": "digits_validation", "test": "digits_test"}.get(name, name)
        path = CACHE / f"geom_{stem}.npy"
        if path.exists():
            g = np.load(path)
            view["geom"] = g[0] if name == "train" else g
    data = {k: v for k, v in data.items() if "geom" in v or k.startswith("arrays")}
    deciders = [GeometryHead(0, geometry_only=True), GeometryHead(0), GeometryHead(32), GeometryHead(64)]
    # fitted() caches by name; these names are new
    results, _ = ev.run(deciders, data, args.rates, list(ev.TRAIN_KINDS), list(ev.HELD_OUT))
    out = HERE / args.out
    out.with_suffix(".json").write_text(json.dumps({"command": "python exp_geom.py " + " ".join(sys.argv[1:]), "results": results}, indent=1))
    md = ev.table(results, list(ev.TRAIN_KINDS), list(ev.HELD_OUT))
    out.with_suffix(".md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
