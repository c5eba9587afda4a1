"""Digits that touch (mnist_digits/touching.py): a mark the shipped not_a_digit/ network calls
digits that touch is cut into the digits it holds, as `predict` and `serve` read pictures; any
other mark is read as before. The benchmark's touching renderings of a few test digits (its
tables: benchmarks/pictures.py on all 10,000), and what the networks remember (classifier).
Where the cut finds digits, the reader (not_a_digit/reader/) may read the whole mark instead."""

import itertools
import json
import shutil

import numpy as np
import pytest

from benchmarks import renderings
from conftest import SHIPPED, run_main
from mnist_digits import classifier, pictures, touching
from mnist_digits.classifier import Gate, picture_answerer


def rendered(name, x, folder=None):
    """Each digit of x (with digits i+1, i+2 where the rendering holds several) as the benchmark
    renders it: grey pictures, or files in `folder`."""
    render = renderings.RENDERINGS[name][1]
    count = renderings.DIGITS_PER_FILE.get(name, 1)
    out = []
    for index, digit in enumerate(x):
        image, fmt, options = render(digit, index, *(x[(index + k) % len(x)] for k in range(1, count)))
        if folder is None:
            out.append(np.asarray(image.convert("L"), np.float32) / 255)
        else:
            out.append(folder / f"{index:03d}.{fmt.lower()}")
            image.save(out[-1], fmt, **options)
    return out


def expected_numbers(name, y):
    count = renderings.DIGITS_PER_FILE[name]
    return ["".join(str(y[(i + k) % len(y)]) for k in range(count)) for i in range(len(y))]


@pytest.mark.parametrize("name, at_least", [
    # Measured on the first 300 test digits: 83% and 94% (without the split 25% and 2%).
    ("two digits touching, boxes overlapping", 0.7),
    ("two digits joined by a stroke", 0.8),
])
def test_predict_reads_two_digits_that_touch_as_their_number(name, at_least, test_digits,
                                                             tmp_path, capsys):
    x, y = test_digits[0][:40], test_digits[1][:40]
    files = rendered(name, x, tmp_path)
    status, out, err = run_main(capsys, "predict", "--json", *files, "--model-dir", SHIPPED)
    assert status == 0 and not err
    numbers = [json.loads(line)["number"] for line in out]
    right = np.mean([n == e for n, e in zip(numbers, expected_numbers(name, y))])
    assert right >= at_least, numbers


def test_the_server_reads_three_digits_joined_by_a_stroke(shipped_classifier, shipped_gate,
                                                          test_digits):
    """Measured on the first 300: 88% (without the split, none)."""
    name = "three digits joined by a stroke"
    x, y = test_digits[0][:20], test_digits[1][:20]
    answer = picture_answerer(shipped_classifier, shipped_gate)
    numbers = [answer(grey)["number"] for grey in rendered(name, x)]
    assert np.mean([n == e for n, e in zip(numbers, expected_numbers(name, y))]) >= 0.7, numbers


def test_the_reader_reads_three_touching_digits_the_cut_misreads(tmp_path, test_digits, capsys,
                                                                 shipped_classifier,
                                                                 shipped_gate, shipped_reader):
    """Measured on the first 40 test digits: 35 right with the reader, 31 without it (a copy of
    the model without not_a_digit/reader/); the reader changed 4 answers, all to the right
    number. Its digits' probabilities are its own (touching.Splitter's `read`)."""
    name = "three digits touching, boxes overlapping"
    x, y = test_digits[0][:40], test_digits[1][:40]
    files = rendered(name, x, tmp_path)
    without = tmp_path / "without_reader"
    shutil.copytree(SHIPPED, without, ignore=shutil.ignore_patterns("reader", "saved_model"))
    said = {}
    for model_dir in (SHIPPED, without):
        status, out, err = run_main(capsys, "predict", "--json", *files, "--model-dir", model_dir)
        assert status == 0 and not err
        said[model_dir] = [json.loads(line) for line in out]
    expected = expected_numbers(name, y)
    right = {model_dir: np.array([a["number"] == e for a, e in zip(answers, expected)])
             for model_dir, answers in said.items()}
    assert right[SHIPPED].sum() >= right[without].sum() + 3
    changed = [i for i, (a, b) in enumerate(zip(said[SHIPPED], said[without])) if a != b]
    assert right[SHIPPED][changed].mean() >= 0.75, changed
    assert all(len(said[SHIPPED][i]["digits"]) == 3 for i in changed)
    for i in changed:
        split = touching.splitter(shipped_classifier, shipped_gate, shipped_reader)
        pictures.find_digits(pictures.decode_picture(files[i].read_bytes()), split)
        assert sorted(split.read) == [0, 1, 2]
        assert said[SHIPPED][i]["digit_probabilities"] == \
            [round(float(split.read[k].max()), 6) for k in range(3)]


def cut_short(folder):
    for name in ("model.tflite", "model.keras"):  # a failed copy, git-LFS pointers
        (folder / name).write_bytes(b"version https://git-lfs\n")


def the_gates_network(folder):
    for name in ("model.tflite", "model.keras"):
        shutil.copy(SHIPPED / "not_a_digit" / name, folder / name)


def a_network_of_28_px_digits(folder):
    """Eleven outputs, as the reader's, but for 28 x 28 images (model.keras only)."""
    import keras
    (folder / "model.tflite").unlink()
    keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                      keras.layers.Dense(11)]).save(folder / "model.keras")


@pytest.mark.parametrize("damage, words", [
    (cut_short, "cannot be loaded"),
    (the_gates_network, "gives 12 outputs, not the 11 expected"),
    (a_network_of_28_px_digits, "holds no reader of (28, 84) strips"),
], ids=["cut short", "the gate's network", "a network of 28 px digits"])
def test_a_damaged_reader_is_one_clear_line_where_a_picture_needs_it(damage, words, tmp_path,
                                                                    test_digits, capsys):
    """predict loads the reader at the first picture that needs it: a single digit is read as
    ever; three touching digits get one line naming the reader and what to do, exit status 1."""
    model_dir = tmp_path / "model"
    shutil.copytree(SHIPPED, model_dir, ignore=shutil.ignore_patterns("saved_model"))
    damage(model_dir / "not_a_digit" / "reader")
    one = rendered("28 px dark on white", test_digits[0][:1], tmp_path)
    (tmp_path / "three").mkdir()
    three = rendered("three digits touching, boxes overlapping", test_digits[0][:16],
                     tmp_path / "three")[13]  # one the cut finds digits in
    status, out, err = run_main(capsys, "predict", *one, "--model-dir", model_dir)
    assert status == 0 and out[0].startswith(f"{one[0]}: {test_digits[1][0]} (") and not err
    status, out, err = run_main(capsys, "predict", three, three, "--model-dir", model_dir)
    assert status == 1 and not out and len(err) == 2 and err[0] == err[1], err  # once a picture
    for part in (words, "reader", "delete"):
        assert part in err[0], err[0]


def path_logits(*runs, sure=10.0):
    """The reader's logits (21 steps, 11) whose surest path is `runs`: (class, steps) pairs, 0
    the blank, 1-10 the digits 0-9; each step's class `sure` above the other ten."""
    path = [label for label, steps in runs for _ in range(steps)]
    assert len(path) == 21
    logits = np.zeros((21, 11))
    logits[np.arange(21), path] = sure
    return logits


def two_blocks():
    """A mark's ink, 40 x 80: two blocks, columns 5-29 and 45-74, nothing between."""
    ink = np.zeros((40, 80), np.float32)
    ink[5:35, 5:30] = 1
    ink[5:35, 45:75] = 1
    return ink


def digit_network(cut_digits, reader_view):
    """The digit network made up: the cut's two marks (0.1 and 0.2 throughout, reading_of's)
    read surely as `cut_digits`; any other mark (one of the reader's pieces) read with the
    probabilities `reader_view` (10,)."""
    def classify(images):
        cut = np.eye(10, dtype=np.float32)[cut_digits]
        return np.array([cut[round(10 * image.flat[0]) - 1] if image.flat[0] > 0 else reader_view
                         for image in images], np.float32)
    return classify


def sure_of(*digits):
    """Probabilities (10,) of the digit network sure (0.9 between them) of `digits`."""
    view = np.full(10, 0.1 / (10 - len(digits)), np.float32)
    view[list(digits)] = 0.9 / len(digits)
    return view


def reading_of(logits, cut_digits, reader_view, ink=None):
    """Splitter.read_whole on two_blocks() (or `ink`) cut into its two blocks read as
    `cut_digits`, the reader giving `logits`, the digit network reading the reader's pieces
    as `reader_view`."""
    ink = two_blocks() if ink is None else ink
    pieces = [(ink[5:35, 5:30], np.full((28, 28), 0.1, np.float32)),
              (ink[5:35, 45:75], np.full((28, 28), 0.2, np.float32))]
    split = touching.Splitter(digit_network(cut_digits, reader_view), Gate(None, 0.5),
                              lambda strips: logits[np.newaxis])
    return pieces, split.read_whole(ink, False, pieces)


def test_the_readers_digits_are_taken_where_both_networks_find_them_likelier(monkeypatch):
    """READER_GAIN decides on the reader's log-likelihood and the digit network's together (a
    reader and a digit network made up, so the numbers are exact): the reader's 4, 2 against the
    cut's 1, 7; not where the cut read 4, 2 too, where the reader reads one digit, or where the
    digit network finds no 4 or 2 in the reader's pieces; at READER_GAIN just above the gain, not."""
    blank, four, two = 0, 5, 3  # CTC's classes: 0 the blank, digit d is d + 1
    logits = path_logits((blank, 5), (four, 3), (blank, 5), (two, 3), (blank, 5))
    pieces, (taken, probabilities) = reading_of(logits, [1, 7], sure_of(4, 2))
    assert taken is not pieces and len(taken) == 2
    assert [p.argmax() for p in probabilities] == [4, 2]
    # cut half-way between the places read (steps 5 and 13: the strip's columns 22 and 54, the
    # ink's 11 and 59: its inked columns 5-74 fill 47 of the strip's from its column 18)
    assert np.array_equal(taken[0][0], two_blocks()[5:35, 5:30])
    assert np.array_equal(taken[1][0], two_blocks()[5:35, 45:75])
    for cut, reader_logits, view in (
            ([4, 2], logits, sure_of(4, 2)),
            ([1, 7], path_logits((blank, 8), (four, 5), (blank, 8)), sure_of(4)),
            ([1, 7], logits, np.eye(10, dtype=np.float32)[7])):  # 4 and 2 impossible to it
        pieces, reading = reading_of(reader_logits, cut, view)
        assert reading[0] is pieces and reading[1] is None
    gain = (touching.ctc_log_likelihood(logits, [5, 3]) + 2 * np.log(sure_of(4, 2)[4])
            - touching.ctc_log_likelihood(logits, [2, 8]))
    monkeypatch.setattr(touching, "READER_GAIN", gain + 0.01)
    pieces, reading = reading_of(logits, [1, 7], sure_of(4, 2))
    assert reading[0] is pieces and reading[1] is None
    monkeypatch.setattr(touching, "READER_GAIN", gain - 0.01)
    assert reading_of(logits, [1, 7], sure_of(4, 2))[1][1] is not None


def test_where_a_readers_piece_would_hold_no_ink_the_cut_stands():
    """Three digits read at steps 7, 9 and 11 (the ink's columns 23, 35 and 47): pieces cut at
    29 and 41, the middle one the first block's last column; at steps 8, 9 and 10 (29, 35, 41),
    cut at 32 and 38, the middle piece would hold no ink: the cut's pieces stand."""
    blank, one, two, three = 0, 2, 3, 4
    spaced = path_logits((blank, 7), (one, 1), (blank, 1), (two, 1), (blank, 1), (three, 1),
                         (blank, 9))
    pieces, (taken, probabilities) = reading_of(spaced, [1, 7], sure_of(1, 2, 3))
    assert [p.argmax() for p in probabilities] == [1, 2, 3]
    assert [piece.shape[1] for piece, _ in taken] == [24, 1, 30]
    close = path_logits((blank, 8), (one, 1), (two, 1), (three, 1), (blank, 10))
    pieces, reading = reading_of(close, [1, 7], sure_of(1, 2, 3))
    assert reading[0] is pieces and reading[1] is None


def test_the_strips_columns_lead_back_to_the_inks_where_strokes_are_thickened():
    """A mark of thin strokes is thickened (and padded) before it is scaled into the strip:
    to_ink still gives the columns of the ink as it was, thickened strokes' edges just outside
    the thin ones."""
    ink = np.zeros((60, 200), np.float32)
    for column in (20, 100, 178):
        ink[5:55, column:column + 2] = 1
    assert pictures.thicken_thin_strokes(ink).shape[1] > ink.shape[1]  # padded
    strip, to_ink = touching.wide_mark(ink, False)
    columns = np.flatnonzero(strip.max(axis=0) > 0)
    first, last = to_ink(columns[0]), to_ink(columns[-1] + 1)
    assert 0 <= first < 20 and 180 < last <= 200
    assert to_ink((columns[0] + columns[-1] + 1) / 2) == pytest.approx(100, abs=2)


def test_a_mark_read_as_a_digit_is_never_cut(shipped_classifier, shipped_gate, test_digits):
    split = touching.splitter(shipped_classifier, shipped_gate)
    checked = 0
    for name in ("112 px thick marker", "two digits side by side", "56 px blurred 2 px"):
        for grey in rendered(name, test_digits[0][:30]):
            as_before, main_before = pictures.find_digits(grey)
            if shipped_gate(as_before[..., np.newaxis]).any():
                continue  # a mark the gate rejects may be cut: not this test's case
            marks, main = pictures.find_digits(grey, split)
            assert main == main_before and np.array_equal(marks, as_before), name
            checked += 1
    assert checked >= 80


# Pictures of two test digits touching (their index) whose mark the gate calls no digit with
# "digits that touch" under "not a digit" but over TOUCHING_SHARE of it: tried only since then.
TRIED_SINCE_TOUCHING_SHARE = [36, 59, 159, 249, 263, 292]


def test_marks_the_gate_finds_likely_enough_digits_that_touch_are_tried(
        full_arrays, shipped_classifier, shipped_gate, shipped_reader):
    """Measured: 5 of the 6 read right (263, 79, is read 71)."""
    x, y = full_arrays["x_test"], full_arrays["y_test"]
    render = renderings.RENDERINGS["two digits touching, boxes overlapping"][1]
    judge = touching.judge_for(shipped_classifier, shipped_gate)
    answer = picture_answerer(shipped_classifier, shipped_gate, shipped_reader)
    right = 0
    for index in TRIED_SINCE_TOUCHING_SHARE:
        grey = np.asarray(render(x[index], index, x[index + 1])[0].convert("L"), np.float32) / 255
        marks, _ = pictures.find_digits(grey)
        outputs = shipped_gate.network(marks[..., np.newaxis])[0]
        assert len(marks) == 1 and judge(marks)[2][0], index
        assert outputs[touching.TOUCHING] < outputs[touching.NUM_CLASSES], index
        right += answer(grey)["number"] == f"{y[index]}{y[index + 1]}"
    assert right >= 4


def test_a_network_without_the_touching_output_cuts_nothing(shipped_classifier, shipped_gate,
                                                            test_digits):
    """An eleven-output not_a_digit/ (a model directory made before the twelfth output): its
    "not a digit" output alone decides, and no mark is split, where the twelve outputs split."""
    eleven = Gate(lambda images: shipped_gate.network(images)[:, :11], shipped_gate.threshold)
    splits = {gate: touching.splitter(shipped_classifier, gate) for gate in (eleven, shipped_gate)}
    cut = 0
    for grey in rendered("two digits joined by a stroke", test_digits[0][:10]):
        as_before, _ = pictures.find_digits(grey)
        assert np.array_equal(pictures.find_digits(grey, splits[eleven])[0], as_before)
        cut += len(pictures.find_digits(grey, splits[shipped_gate])[0]) > len(as_before)
    assert cut >= 5


def test_a_pieces_size_is_its_share_of_the_marks():
    """Sizes as pictures.main_index compares them (the strokes' height and pixels): a piece
    of a mark gets the mark's, times its share of the mark's inked rows and of its ink."""
    ink = np.zeros((40, 60), np.float32)
    ink[:, :25] = 1  # 1,000 pixels, all 40 rows
    ink[20:, 30:] = 0.5  # 600 pixels, the lower half
    size = (38, 1200)  # the strokes' own, a little smaller than the ink's
    assert touching.piece_size(ink[:, :25], ink, size) == (38, 750)
    assert touching.piece_size(ink[20:, 30:], ink, size) == (19, 450)


def test_a_chosen_piece_reaches_past_its_seam_only_where_that_reads_surer():
    """Two strokes sharing the columns 18-21 (as touching digits share ink), cut at column 20:
    each piece is read as it is and reaching REACH past the seam; the surest reading is kept,
    with the gate's word on it, and the piece as it was where no wider one reads surer."""
    ink = np.zeros((50, 40), np.float32)
    ink[5:45, 4:22] = 1
    ink[5:45, 18:36] = 0.5
    lines = [np.zeros(50, int), np.full(50, 20), np.full(50, 40)]
    judged = []

    def judge(marks, scores=(-0.3, -0.1, -0.2)):  # the second reach reads surest
        judged.append(marks)
        return np.array(scores), np.array([False, True, False]), None

    reading = (ink[5:45, 4:20], None, -0.5, False)
    piece, mark, score, no_digit = touching.surest_reach(ink, lines, (0, 1), False, judge, reading)
    assert len(judged[-1]) == len(touching.REACH) == 3 and mark.shape == (28, 28)
    reach = round(touching.REACH[1] * 50)
    assert np.array_equal(piece, ink[5:45, 4:20 + reach]) and (score, no_digit) == (-0.1, True)
    piece, *_ = touching.surest_reach(ink, lines, (1, 2), False, judge, (ink[5:45, 20:36], None,
                                                                         -0.5, False))
    assert np.array_equal(piece, ink[5:45, 20 - reach:36])  # to the left; the right is the edge
    sure = (ink[5:45, 4:20], None, -0.05, False)  # nothing reads surer than the piece as it was
    assert touching.surest_reach(ink, lines, (0, 1), False, judge, sure) is sure


def test_the_server_reads_each_mark_once_a_picture_and_again_for_the_next(
        shipped_classifier, shipped_gate, test_digits):
    """The cut's judge and the answer read the same marks: the networks remember them for one
    picture (classifier.for_one_picture), and the next picture starts afresh."""
    read = {"digits": [], "gate": []}

    def counting(network, log):
        def run(images):
            log.extend(image.tobytes() for image in np.asarray(images, np.float32))
            return network(images)
        return run

    gate = Gate(counting(shipped_gate.network, read["gate"]), shipped_gate.threshold)
    answer = picture_answerer(counting(shipped_classifier, read["digits"]), gate)
    for grey in rendered("two digits touching, boxes overlapping", test_digits[0][:10]):
        for log in read.values():
            log.clear()
        digits = answer(grey).get("digits", [])
        first = {network: len(log) for network, log in read.items()}
        if len(digits) == 2 and first["gate"] > 2 * 2:  # cut: pieces judged beyond the two
            for log in read.values():                   # answered
                assert len(set(log)) == len(log)  # no image read twice by one network...
            answer(grey)
            assert {network: len(log) for network, log in read.items()} == {
                network: 2 * count for network, count in first.items()}  # ...but again later
            return
    pytest.fail("none of 10 pictures of two touching digits was cut (83% are, on 300)")


def test_without_a_gate_there_is_no_split(shipped_classifier, shipped_reader):
    assert touching.splitter(shipped_classifier, None) is None
    assert touching.splitter(shipped_classifier, None, shipped_reader) is None


def brute_force_likelihood(logits, labels):
    """P(labels) under CTC by adding up every path through the steps that collapses to them
    (repeats merged, then blanks, 0, left out)."""
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    total = 0.0
    for path in itertools.product(range(logits.shape[1]), repeat=len(logits)):
        collapsed = [label for i, label in enumerate(path) if label and (i == 0 or label != path[i - 1])]
        if collapsed == list(labels):
            total += np.prod(probabilities[np.arange(len(path)), path])
    return total


@pytest.mark.parametrize("labels", [[1], [2, 1], [1, 1], [2, 2, 1], [1, 2, 1, 2]])
def test_ctcs_likelihood_adds_up_every_path_to_the_labels(labels):
    """The forward algorithm (touching.ctc_log_likelihood) against every path written out: 6
    steps of 3 classes (0 the blank); a label repeated needs a blank between."""
    logits = np.random.default_rng(len(labels) * 7 + sum(labels)).normal(0, 2, (6, 3))
    assert np.exp(touching.ctc_log_likelihood(logits, labels)) == \
        pytest.approx(brute_force_likelihood(logits, labels), rel=1e-9)


def test_the_surest_path_merges_repeats_and_drops_blanks():
    """Blank, 2, 2, blank, 2, 7, 7, blank: the digits 2, 2 and 7, each at the step where it is
    surest, its probabilities those of that step over the ten digits."""
    best = [0, 3, 3, 0, 3, 8, 8, 0]
    logits = np.full((8, 11), -5.0)
    logits[np.arange(8), best] = 5.0
    logits[2, 3] = 6.0  # the first 2 is surer at its second step
    logits[6, 4] = 0.0  # a 3 somewhat likely at the second 7's step
    digits, sureness, places, probabilities = touching.surest_path(logits)
    assert digits == [2, 2, 7] and places == [2, 4, 5]
    assert 0 < sureness < 1 and len(probabilities) == 3
    for digit, p in zip(digits, probabilities):
        assert p.shape == (10,) and p.argmax() == digit and p.sum() == pytest.approx(1)


def test_a_network_remembers_the_images_of_one_picture_and_gives_the_same_outputs(test_digits):
    """What touching.splitter reads is not read again when answered: the outputs come from the
    memo (not the network) and are the network's own, whatever else the call holds."""
    computed = []

    def network(images):
        computed.append(len(images))
        return images[:, 0, :3, 0] * 2 + images[:, 14, :3, 0]

    run = classifier.remembering(network)
    images = test_digits[0][:, :, :, np.newaxis].astype(np.float32) / 255
    first = run(images[:10])
    mixed = run(images[5:20])
    assert computed == [10, 10]  # images 5-9 were remembered
    assert np.array_equal(mixed, network(images[5:20]))
    assert np.array_equal(first, network(images[:10]))
    twice = run(np.concatenate([images[50:52], images[50:52]]))  # the same image twice in a call
    assert computed[-1] == 4 and np.array_equal(twice[:2], twice[2:])
    assert run(np.zeros((0, 28, 28, 1), np.float32)).shape == (0, 3)
    computed.clear()
    classifier.remembering(network)(images[:10])  # the next picture's memo starts empty
    assert computed == [10]
