"""Simple shape measures of each mark (28x28, ink 0-1): ink box height and width, their ratio,
ink amount, holes (background pieces not touching the border), ink pieces, end points of the
thinned strokes. -> cache/geom_<set>.npy"""
import sys, numpy as np
from pathlib import Path
from scipy import ndimage
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE

def measures(m):
    ink = m > 0.3
    if not ink.any():
        return np.zeros(7, np.float32)
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    h, w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    bg, n = ndimage.label(~ink)
    border = set(np.unique(np.concatenate([bg[0], bg[-1], bg[:, 0], bg[:, -1]]))) - {0}
    holes = sum(1 for i in range(1, n + 1) if i not in border and (bg == i).sum() >= 2)
    pieces = ndimage.label(ink, np.ones((3, 3)))[1]
    nb = ndimage.convolve(ink.astype(int), np.ones((3, 3), int), mode="constant") - ink
    ends = int(((nb <= 2) & ink).sum())
    return np.array([h, w, w / h, m.sum() / 100, holes, pieces, ends], np.float32)

for path in sorted(CACHE.glob("digits_*.npz")) + sorted(CACHE.glob("neg_*_s[12].npz")):
    out = CACHE / f"geom_{path.stem}.npy"
    if out.exists():
        continue
    marks = np.load(path)["marks"]
    shape = marks.shape[:-2]
    g = np.stack([measures(m) for m in marks.reshape(-1, 28, 28)]).reshape(*shape, 7)
    np.save(out, g)
    print(path.stem, g.reshape(-1, 7).mean(0).round(2), flush=True)
