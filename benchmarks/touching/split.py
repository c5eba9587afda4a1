"""Digits that touch (issue 33), a study: a mark the "not a digit" network rejects is cut along
seams into the digits it may hold. Not in the product: with the shipped network it reads
touching digits far better but turns some letters, doodles and a drawn X into digits; with a
twelfth output, "digits that touch", deciding which marks to cut, it does not (README.md beside
this file).

`find_digits(grey, judge, ones, surely)`: mnist_digits.pictures.find_digits, with each mark the
judge says to try split where its pieces read surely as digits (none a 1 unless `ones`).
`load_judge(model_dir, touching)`: the judge, the model's networks (mnist_digits.classifier).
"""

import numpy as np

from mnist_digits import pictures
from mnist_digits.classifier import load_classifier, load_gate
from mnist_digits.mnist_files import NUM_CLASSES

# A mark the judge calls no digit is cut along seams, paths
# down it that cross as little ink as they can, into the pieces the judge reads most surely, if
# it reads each of them as a digit, surely, and none as a 1 (a stroke cut from a letter reads
# as a 1: without these two conditions, 61% of the letters drawn as strokes read as digits). Each cut
# beyond the first must make the reading surer by CUT_GAIN (a log-probability), so that a
# digit is not cut into strokes.
CUT_GAIN = 0.5
SURELY = -0.5  # the pieces' log-probabilities add up to at least this (61%)
MOST_DIGITS = 4  # in one mark
SEAM_SPACING = 1 / 12  # seams start this share of the mark's height apart across its middle,
SEAM_REACH = 1 / 6  # ...stray at most this share of it from their start,
SEAM_STEP = 0.3  # ...and a step sideways costs as much as this much ink
SEAM_PULL = 0.05  # ...and each pixel away from the start this much, per row
PIECE_WIDTH = (0.08, 1.4)  # a digit's width, as a share of the mark's height (a 1 to a wide 0)
PIECE_HEIGHT = 0.3  # ...and its height, at least


def load_judge(model_dir, touching=None):
    """(judge, classify, gate) of a model directory with a not_a_digit/ (classifier.load_gate):
    judge(marks (N, 28, 28)) -> how surely each is one digit, read right, as a log-probability
    (the digit's probability and the gate's that it is a digit), that digit, whether the gate
    calls it no digit, and whether to try it as digits that touch (those it calls no digit).
    With `touching`, a Gate whose network has a twelfth output, "digits that touch"
    (touch_recipe.py's), that one decides instead: "not a digit" is its last two outputs
    together above its threshold, and a mark is tried as digits that touch where the twelfth
    is the larger of the two."""
    classify = load_classifier(model_dir)
    gate = touching or load_gate(model_dir)

    def judge(marks):
        images = marks[..., np.newaxis]
        probabilities = classify(images)
        outputs = gate.network(images)
        not_digit = outputs[:, NUM_CLASSES:].sum(axis=1)
        no_digit = not_digit > gate.threshold
        to_split = no_digit & (outputs[:, -1] > outputs[:, NUM_CLASSES]) if touching else no_digit
        return (np.log(probabilities.max(axis=1)) + np.log1p(-np.minimum(not_digit, 1 - 1e-7)),
                probabilities.argmax(axis=1), no_digit, to_split)
    return judge, classify, lambda images: judge(images[..., 0])[2]


def find_digits(grey, judge, ones=False, surely=SURELY):
    """pictures.find_digits(grey), with the marks the judge says to try split (split_doubtful)."""
    if pictures.in_mnist_form(grey) is not None:
        return pictures.find_digits(grey)
    inks, sizes, soft = pictures.digits_ink(grey)
    marks = [pictures.mnist_mark(ink, soft) for ink in inks]
    marks, sizes = split_doubtful(inks, marks, sizes, soft, judge, ones, surely)
    return np.stack(marks), pictures.main_index(sizes)


def split_doubtful(inks, marks, sizes, soft, judge, ones, surely):
    """(marks, sizes) with each mark the judge says to try replaced by the digits it holds,
    where split_touching finds them; a piece's size is its height and pixels of ink."""
    scores, _, _, to_split = judge(np.stack(marks))
    split_marks, split_sizes = [], []
    for ink, mark, size, score, trying in zip(inks, marks, sizes, scores, to_split):
        pieces = split_touching(ink, soft, judge, score, ones, surely) if trying else []
        if len(pieces) > 1:
            split_marks += [piece_mark for _, piece_mark in pieces]
            split_sizes += [(np.ptp(np.flatnonzero(piece.any(axis=1))), np.count_nonzero(piece))
                            for piece, _ in pieces]
        else:
            split_marks.append(mark)
            split_sizes.append(size)
    return split_marks, split_sizes


def split_touching(ink, soft, judge, whole_score, ones=False, surely=SURELY):
    """The digits that touch in one mark's ink, left to right, as (ink, mark) pairs; [] where it
    reads surest as one mark, or its surest pieces are not all digits, read at `surely` or
    better, none a 1 unless `ones` (the numbers above CUT_GAIN). Seams down the ink cut it
    into strips; every run of strips that could be a digit (PIECE_WIDTH, PIECE_HEIGHT) is
    judged, and the pieces chosen are those whose scores add up to the most, less CUT_GAIN for
    each cut beyond the first (best_cuts)."""
    height = ink.shape[0]
    lines = [np.zeros(height, int), *seams(ink), np.full(height, ink.shape[1])]
    columns = np.arange(ink.shape[1])
    pieces = {}
    for start in range(len(lines) - 1):
        for stop in range(start + 1, len(lines)):
            if (start, stop) == (0, len(lines) - 1):
                continue  # the whole mark: already judged
            between = (columns >= lines[start][:, np.newaxis]) & (columns < lines[stop][:, np.newaxis])
            piece = cropped_ink(ink * between)
            if piece is not None and could_be_a_digit(piece.shape, height):
                pieces[start, stop] = piece
    if not pieces:
        return []
    marks = {place: pictures.mnist_mark(piece, soft) for place, piece in pieces.items()}
    scores, digits, no_digit, _ = (dict(zip(marks, values))
                                   for values in judge(np.stack(list(marks.values()))))
    scores[0, len(lines) - 1] = whole_score
    places = best_cuts(scores, len(lines) - 1)
    if (len(places) == 1 or sum(scores[place] for place in places) < surely
            or any(no_digit[place] or (digits[place] == 1 and not ones) for place in places)):
        return []
    return [(pieces[place], marks[place]) for place in places]


def could_be_a_digit(shape, mark_height):
    narrowest, widest = (share * mark_height for share in PIECE_WIDTH)
    return narrowest <= shape[1] <= widest and shape[0] >= PIECE_HEIGHT * mark_height


def cropped_ink(ink):
    rows, cols = np.nonzero(ink > 0)
    if rows.size == 0:
        return None
    return ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def best_cuts(scores, last):
    """The pieces (start, stop), lines 0 to `last` apart, that read surest: the most of their
    scores' sum less CUT_GAIN per cut beyond the first, over 1 to MOST_DIGITS pieces (dynamic
    programming)."""
    best = {(0, 0): (0.0, [])}  # (line, pieces before it): (score, places)
    for stop in range(1, last + 1):
        for count in range(1, MOST_DIGITS + 1):
            ways = [(best[start, count - 1][0] + scores[start, stop],
                     best[start, count - 1][1] + [(start, stop)])
                    for start in range(stop) if (start, count - 1) in best and (start, stop) in scores]
            if ways:
                best[stop, count] = max(ways, key=lambda way: way[0])
    readings = [(score - CUT_GAIN * max(count - 2, 0), places)
                for (line, count), (score, places) in best.items() if line == last]
    return max(readings, key=lambda reading: reading[0])[1]


def seams(ink):
    """Paths down the ink, crossing as little of it as they can: one from each of a row of
    starting columns across the middle 70% of it, kept within SEAM_REACH of its start; (K,
    height) columns, the duplicates left out, left to right. Each row, a path moves at most one
    column (dynamic programming down the rows, all paths at once)."""
    height, width = ink.shape
    starts = np.arange(int(0.15 * width), int(0.85 * width) + 1,
                       max(2, int(SEAM_SPACING * height)))
    if starts.size == 0:
        return []
    away = np.abs(np.arange(width) - starts[:, np.newaxis])
    beyond = np.where(away > max(2, int(SEAM_REACH * height)), np.inf, SEAM_PULL * away)
    cost = np.minimum(ink, 1)
    total = cost[0] + beyond  # (paths, columns): the least cost of a path down to here
    moves = np.zeros((height, len(starts), width), np.int8)
    edge = np.full((len(starts), 1), np.inf)
    for row in range(1, height):
        options = np.stack([np.hstack([edge, total[:, :-1]]) + SEAM_STEP, total,
                            np.hstack([total[:, 1:], edge]) + SEAM_STEP])
        choice = options.argmin(axis=0)
        total = np.take_along_axis(options, choice[np.newaxis], 0)[0] + cost[row] + beyond
        moves[row] = choice - 1
    paths = np.empty((len(starts), height), int)
    paths[:, -1] = total.argmin(axis=1)
    for row in range(height - 1, 0, -1):
        paths[:, row - 1] = paths[:, row] + moves[row, np.arange(len(starts)), paths[:, row]]
    unique = {tuple(path): path for path in paths}
    return sorted(unique.values(), key=np.mean)

