#!/bin/sh
# The study's data, one command after another, at low priority (about 100 minutes of one core's
# time on an AMD EPYC), then the network's view of it and the deciders' table:
#     sh benchmarks/not_a_digit/run_build.sh          (from the repository's root; MNIST_DATA)
set -e
cd "$(dirname "$0")"
PY=${PYTHON:-../../.venv/bin/python}
for split in test validation train; do
  [ -f cache/digits_$split.npz ] || nice -n 15 $PY build_data.py digits --split $split
done
for spec in font_letters:8000 stroke_letters:4000 doodles:4000 scribbles:5000 digit_overlaps:5000 digit_pieces:4000 words:1500 kana_kanji:4000 hershey_symbols:4000 world_scripts:4000 world_strokes:4000 pictograms:4000; do
  [ -f cache/neg_${spec%%:*}_s1.npz ] || nice -n 15 $PY build_data.py negatives --kind ${spec%%:*} --seed 1 --count ${spec##*:} --digits train
done
for spec in font_letters:3000 stroke_letters:3000 doodles:3000 scribbles:3000 digit_overlaps:3000 digit_pieces:3000 words:1000 kana_kanji:3000 hershey_symbols:3000 world_scripts:3000 world_strokes:3000 pictograms:3000; do
  [ -f cache/neg_${spec%%:*}_s2.npz ] || nice -n 15 $PY build_data.py negatives --kind ${spec%%:*} --seed 2 --count ${spec##*:} --digits test
done
nice -n 15 $PY features.py
nice -n 15 $PY evaluate.py --rates 0.001 0.0015 --deciders "max softmax" energy mahalanobis logistic "MLP 32" --out results/new_model
