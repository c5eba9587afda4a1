"""Digits that touch ("2026" written quickly, its 2 and 0 joined): a mark the not_a_digit/
network calls no digit, and more likely digits that touch than something else, is cut along
seams, paths down the ink that cross as little of it as they can, into the digits it holds.

`splitter(classify, gate)`: the `split` that pictures.find_digits takes (None without a gate).
A gate with no "digits that touch" output (an eleven-output not_a_digit/) splits nothing. NumPy
only: the networks are called, not imported.
"""

import numpy as np

from . import pictures
from .mnist_files import NUM_CLASSES

# A mark's pieces must read surely as digits, each one to the gate too (to the digit network
# alone, a stroke cut from a letter reads surely as a 1). Each cut beyond the first must make
# the reading surer by CUT_GAIN (a log-probability), so that a digit is not cut into strokes.
CUT_GAIN = 0.5
SURELY = -0.5  # the pieces' log-probabilities add up to at least this (61%)
MOST_DIGITS = 4  # in one mark
SEAM_SPACING = 1 / 12  # seams start this share of the mark's height apart across its middle,
SEAM_REACH = 1 / 6  # ...stray at most this share of it from their start,
SEAM_STEP = 0.3  # ...and a step sideways costs as much as this much ink
SEAM_PULL = 0.05  # ...and each pixel away from the start this much, per row
PIECE_WIDTH = (0.08, 1.4)  # a digit's width, as a share of the mark's height (a 1 to a wide 0)
PIECE_HEIGHT = 0.3  # ...and its height, at least
# A chosen piece may reach past a seam by these shares of the mark's height (surest_reach).
REACH = (0.04, 0.08, 0.12)
TOUCHING = NUM_CLASSES + 1  # the gate's output "digits that touch" (NUM_CLASSES: "not a digit")


def splitter(classify, gate):
    """split(inks, marks, sizes, soft) -> (marks, sizes), for pictures.find_digits: each mark the
    gate calls no digit, and digits that touch more than anything else, replaced by the digits
    split_touching finds in it. None where there is no gate."""
    if gate is None:
        return None
    judge = judge_for(classify, gate)
    return lambda inks, marks, sizes, soft: split_doubtful(inks, marks, sizes, soft, judge)


def judge_for(classify, gate):
    """judge(marks) -> how surely each mark is one digit, as a log-probability (the digit's
    probability and the gate's that it is a digit); whether the gate calls it no digit; whether
    to try it as digits that touch."""

    def judge(marks):
        images = marks[..., np.newaxis]
        probabilities, outputs = classify(images), gate.network(images)
        not_digit = gate.no_digit_score(outputs)
        no_digit = not_digit > gate.threshold
        touching = (outputs[:, TOUCHING] > outputs[:, NUM_CLASSES] if outputs.shape[1] > TOUCHING
                    else np.zeros(len(marks), bool))
        return (np.log(probabilities.max(axis=1)) + np.log1p(-np.minimum(not_digit, 1 - 1e-7)),
                no_digit, no_digit & touching)

    return judge


def split_doubtful(inks, marks, sizes, soft, judge):
    """(marks, sizes) with each mark the judge says to try replaced by the digits it holds,
    where split_touching finds them (piece_size)."""
    scores, _, to_split = judge(np.stack(marks))
    split_marks, split_sizes = [], []
    for ink, mark, size, score, trying in zip(inks, marks, sizes, scores, to_split):
        pieces = split_touching(ink, soft, judge, score) if trying else []
        if pieces:
            split_marks += [piece_mark for _, piece_mark in pieces]
            split_sizes += [piece_size(piece, ink, size) for piece, _ in pieces]
        else:
            split_marks.append(mark)
            split_sizes.append(size)
    return split_marks, split_sizes


def piece_size(piece, ink, size):
    """A piece's size as pictures.main_index compares them: the whole mark's (its strokes'
    height and pixels), times the piece's share of the mark's inked rows and of its ink."""
    height, pixels = size
    return (height * piece.shape[0] / ink.any(axis=1).sum(),
            pixels * np.count_nonzero(piece) / np.count_nonzero(ink))


def split_touching(ink, soft, judge, whole_score):
    """The digits that touch in one mark's ink, left to right, as (ink, mark) pairs; [] where it
    reads surest as one mark, or its surest pieces are not all digits, read at SURELY or
    better. Every piece that could be a digit (candidate_pieces) is judged, and the pieces
    chosen are those whose scores add up to the most, less CUT_GAIN for each cut beyond the
    first (best_cuts), each reaching past its seams where that reads surer (surest_reach)."""
    lines = seam_lines(ink)
    pieces, last = candidate_pieces(ink, lines), len(lines) - 1
    if not pieces:
        return []
    marks = {place: pictures.mnist_mark(piece, soft) for place, piece in pieces.items()}
    scores, no_digit, _ = (dict(zip(marks, values))
                           for values in judge(np.stack(list(marks.values()))))
    scores[0, last] = whole_score
    places = best_cuts(scores, last)
    if len(places) == 1:
        return []
    chosen = [surest_reach(ink, lines, place, soft, judge,
                           (pieces[place], marks[place], scores[place], no_digit[place]))
              for place in places]
    if sum(score for _, _, score, _ in chosen) < SURELY or any(none for *_, none in chosen):
        return []
    return [(piece, mark) for piece, mark, _, _ in chosen]


def surest_reach(ink, lines, place, soft, judge, reading):
    """A chosen piece as it reads surest: between its seams (`reading`: piece, mark, score,
    no_digit) or reaching REACH past the seams it shares with its neighbours, into the ink two
    touching digits share."""
    start, stop = place
    wider = []
    for share in REACH:  # past the first and last lines, the ink's edges, there is none
        reach = round(share * ink.shape[0])
        wider.append(ink_between(ink, lines[start] - reach, lines[stop] + reach))
    marks = [pictures.mnist_mark(piece, soft) for piece in wider]
    scores, no_digit, _ = judge(np.stack(marks))
    best = int(np.argmax(scores))
    if scores[best] <= reading[2]:
        return reading
    return wider[best], marks[best], scores[best], no_digit[best]


def seam_lines(ink):
    """The seams down the ink, with its left and right edges as the first and the last."""
    height = ink.shape[0]
    return [np.zeros(height, int), *seams(ink), np.full(height, ink.shape[1])]


def candidate_pieces(ink, lines):
    """{(start, stop): the ink between lines start and stop, cropped}: every run of strips
    between two seams that could be a digit (PIECE_WIDTH, PIECE_HEIGHT), but the whole mark."""
    height = ink.shape[0]
    last = len(lines) - 1
    pieces = {}
    for start in range(last):
        for stop in range(start + 1, last + 1):
            if (start, stop) == (0, last):
                continue
            piece = ink_between(ink, lines[start], lines[stop])
            if piece is not None and could_be_a_digit(piece.shape, height):
                pieces[start, stop] = piece
    return pieces


def could_be_a_digit(shape, mark_height):
    narrowest, widest = (share * mark_height for share in PIECE_WIDTH)
    return narrowest <= shape[1] <= widest and shape[0] >= PIECE_HEIGHT * mark_height


def ink_between(ink, left, right):
    """The ink between two lines down it (each row's first column, and the one past its last),
    cropped; None where there is none."""
    columns = np.arange(ink.shape[1])
    return cropped_ink(ink * ((columns >= left[:, np.newaxis]) & (columns < right[:, np.newaxis])))


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

