"""Digits that touch ("2026" written quickly, its 2 and 0 joined): a mark the not_a_digit/
network may take for digits that touch (TOUCHING_SHARE) is cut along seams, paths down the ink
that cross as little of it as they can, into the digits it holds.

Where the cut finds digits, a reader that reads the whole mark (not_a_digit/reader/: a small CNN
and a GRU read a 28 x 84 strip, CTC's eleven outputs at each of 21 columns) may read it
otherwise: its digits are taken where both networks together find them likelier than the cut's
(READER_GAIN).

`splitter(classify, gate, reader)`: the `split` that pictures.find_digits takes (None without a
gate). A gate with no "digits that touch" output (an eleven-output not_a_digit/) splits nothing.
NumPy and Pillow only: the networks are called, not imported.
"""

import numpy as np
from PIL import Image

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
# A mark the gate calls no digit is tried as digits that touch where its "digits that touch" is
# at least this share of its "not a digit": the cut keeps only pieces that read surely as digits
# (benchmarks/touching/README.md, "Which marks are tried"). A mark it calls a digit never is.
TOUCHING_SHARE = 0.25
# The reader's digits replace the cut's where it reads two or more and they are e^READER_GAIN
# times likelier than the cut's to both networks (Splitter.weigh): benchmarks/touching/README.md,
# "Both networks weigh each reading".
READER_GAIN = 1.0
STRIP_SHAPE = (28, 84)  # the reader's input: a mark 20 px tall (MNIST's digit box), centred
STRIP_DIGIT_HEIGHT = 20
STRIP_STEP = 4  # columns of the strip to each of the reader's steps (outputs along it)
STRIP_STEPS = STRIP_SHAPE[1] // STRIP_STEP


class Splitter:
    """split(inks, marks, sizes, soft) -> (marks, sizes), for pictures.find_digits: each mark the
    gate may take for digits that touch (judge_for, TOUCHING_SHARE) replaced by the digits
    split_touching finds in it, or those the reader reads in it (read_whole). `read`: {the
    index of a mark in the marks returned: its probabilities (10,)} for the digits the reader
    read, which classifier.answer_digits takes in place of the networks' reading."""

    def __init__(self, classify, gate, reader=None):
        self.classify, self.reader, self.read = classify, reader, {}
        self.judge = judge_for(classify, gate)

    def __call__(self, inks, marks, sizes, soft):
        scores, _, to_split = self.judge(np.stack(marks))
        split_marks, split_sizes = [], []
        for ink, mark, size, score, trying in zip(inks, marks, sizes, scores, to_split):
            pieces = split_touching(ink, soft, self.judge, score) if trying else []
            if pieces and self.reader is not None:
                pieces, probabilities = self.read_whole(ink, soft, pieces)
                if probabilities is not None:  # the reader's digits, at these places
                    self.read.update(enumerate(probabilities, start=len(split_marks)))
            if pieces:
                split_marks += [piece_mark for _, piece_mark in pieces]
                split_sizes += [piece_size(piece, ink, size) for piece, _ in pieces]
            else:
                split_marks.append(mark)
                split_sizes.append(size)
        return split_marks, split_sizes

    def read_whole(self, ink, soft, pieces):
        """(pieces, None): the cut's pieces ((ink, mark) pairs), as they are; or (the reader's
        pieces, their probabilities), where it reads the whole mark as two or more digits that
        both networks find likelier than the cut's (READER_GAIN). Where one of its pieces would
        hold no ink, the cut's pieces."""
        logits, digits, probabilities, reader_pieces = self.reader_reading(ink, soft)
        if reader_pieces is None:
            return pieces, None
        if self.weigh(logits, reader_pieces, digits) - self.weigh(logits, pieces) < READER_GAIN:
            return pieces, None
        return reader_pieces, probabilities

    def reader_reading(self, ink, soft):
        """The reader's reading of a mark's ink: (its logits, the digits of its surest path, each
        one's probabilities over the ten digits, its pieces). The pieces are the ink cut half-way
        between the places it read its digits at: the digit network weighs them, and they give
        the digits' sizes (pictures.main_index); None where it reads fewer than two digits or a
        piece would hold no ink."""
        strip, to_ink = wide_mark(ink, soft)
        logits = self.reader(strip[np.newaxis, ..., np.newaxis])[0]
        digits, _, places, probabilities = surest_path(logits)
        if len(digits) < 2:
            return logits, digits, probabilities, None
        centres = [to_ink(STRIP_STEP * (place + 0.5)) for place in places]
        return logits, digits, probabilities, pieces_between(ink, soft, centres)

    def weigh(self, logits, pieces, digits=None):
        """How likely a reading of a mark is to both networks, as a log-probability: the
        reader's (CTC, over every alignment: `logits`) plus the digit network's
        (pieces_log_likelihood) for its pieces to hold `digits`, or where None the digit
        network's own reading of each piece."""
        digits, by_digit_network = self.pieces_log_likelihood(pieces, digits)
        return float(ctc_log_likelihood(logits, [digit + 1 for digit in digits]) + by_digit_network)

    def pieces_log_likelihood(self, pieces, digits=None):
        """(digits, the digit network's log-probability that each piece, an (ink, mark) pair,
        holds its digit, summed); `digits`, or where None the network's own reading of each."""
        probabilities = self.classify(np.stack([mark for _, mark in pieces])[..., np.newaxis])
        if digits is None:
            digits = probabilities.argmax(axis=1)
        chances = probabilities[np.arange(len(pieces)), digits]
        return digits, np.log(np.maximum(chances, np.finfo(np.float32).tiny)).sum()


def pieces_between(ink, soft, centres):
    """A mark's ink cut half-way between the digits' centres (its columns), as (ink, mark)
    pairs; None where a piece would hold no ink."""
    halfway = [round((a + b) / 2) for a, b in zip(centres, centres[1:])]
    edges = np.clip([0, *halfway, ink.shape[1]], 0, ink.shape[1])
    inks = [cropped_ink(ink[:, left:right]) for left, right in zip(edges, edges[1:])]
    if any(piece is None for piece in inks):
        return None
    return [(piece, pictures.mnist_mark(piece, soft)) for piece in inks]


def splitter(classify, gate, reader=None):
    """A Splitter (classify, gate and reader: classifier's load_classifier, load_gate and
    load_reader), or None where there is no gate."""
    return None if gate is None else Splitter(classify, gate, reader)


def judge_for(classify, gate):
    """judge(marks) -> how surely each mark is one digit, as a log-probability (the digit's
    probability and the gate's that it is a digit); whether the gate calls it no digit; whether
    to try it as digits that touch (TOUCHING_SHARE)."""

    def judge(marks):
        images = marks[..., np.newaxis]
        probabilities, outputs = classify(images), gate.network(images)
        not_digit = gate.no_digit_score(outputs)
        no_digit = not_digit > gate.threshold
        touching = (outputs[:, TOUCHING] >= TOUCHING_SHARE * outputs[:, NUM_CLASSES]
                    if outputs.shape[1] > TOUCHING else np.zeros(len(marks), bool))
        return (np.log(probabilities.max(axis=1)) + np.log1p(-np.minimum(not_digit, 1 - 1e-7)),
                no_digit, no_digit & touching)

    return judge


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


def wide_mark(ink, soft):
    """A mark's ink (pictures.digits_ink), strokes thickened as for the digit network, scaled to
    STRIP_DIGIT_HEIGHT (or to fit the strip's width), centred in a STRIP_SHAPE strip: the
    reader's input; and to_ink(column of the strip) -> the ink's column."""
    thickened = pictures.thicken_thin_strokes(ink)
    pad = (thickened.shape[1] - ink.shape[1]) // 2  # thickening pads the ink on every side
    rows, cols = np.nonzero(thickened > 0.1 * thickened.max())
    ink = thickened[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    strip_height, strip_width = STRIP_SHAPE
    scale = min(STRIP_DIGIT_HEIGHT / ink.shape[0], (strip_width - 4) / ink.shape[1])
    height, width = (max(1, round(n * scale)) for n in ink.shape)
    mark = Image.fromarray(ink.astype(np.float32)).resize((width, height), Image.Resampling.BILINEAR)
    mark = np.clip(np.asarray(mark), 0, 1)
    if soft:
        mark = pictures.sharpened(mark)
    strip = np.zeros(STRIP_SHAPE, np.float32)
    top, left = (strip_height - height) // 2, (strip_width - width) // 2
    strip[top:top + height, left:left + width] = mark
    return strip, lambda column: cols.min() - pad + (column - left) / scale


def surest_path(logits):
    """CTC's surest path through the reader's logits (steps, 11; 0 the blank, 1-10 the digits),
    its repeats merged and blanks left out: (digits, the path's probability, the step at which
    each digit is surest, each digit's probabilities there over the ten digits (10,))."""
    probabilities = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    best = probabilities.argmax(axis=-1)
    digits, places = [], []
    for step, label in enumerate(best):
        if label == 0:
            continue
        if step and label == best[step - 1]:  # the same digit, one step on
            if probabilities[step, label] > probabilities[places[-1], label]:
                places[-1] = step
            continue
        digits.append(int(label) - 1)
        places.append(step)
    digit_probabilities = [probabilities[step, 1:] / probabilities[step, 1:].sum() for step in places]
    return digits, float(np.prod(probabilities.max(axis=-1))), places, digit_probabilities


def ctc_log_likelihood(logits, labels, blank=0):
    """log P(labels | logits) under CTC, over every alignment: logits (steps, classes), labels
    class numbers (no blank). The forward algorithm in log space."""
    logits = np.asarray(logits, np.float64)
    log_probabilities = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    extended = [blank] + [x for label in labels for x in (label, blank)]  # blank, a, blank, b, ...
    # a path may skip a blank between two different labels
    skips = np.array([s >= 2 and extended[s] != blank and extended[s] != extended[s - 2]
                      for s in range(len(extended))])
    alpha = np.full(len(extended), -np.inf)
    alpha[:2] = log_probabilities[0, extended[:2]]
    for step in log_probabilities[1:]:
        previous = alpha
        alpha = previous.copy()
        alpha[1:] = np.logaddexp(alpha[1:], previous[:-1])
        alpha[2:][skips[2:]] = np.logaddexp(alpha[2:][skips[2:]], previous[:-2][skips[2:]])
        alpha = alpha + step[extended]
    return float(np.logaddexp(alpha[-1], alpha[-2]))
