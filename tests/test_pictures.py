"""mnist_digits/pictures.py step by step on small arrays, and the benchmark's clean renderings of the first
300 test digits, which must be read as their arrays are (benchmarks/pictures.py runs all
10,000 and the harder renderings)."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

import mnist_digit_recognition as mdr
from benchmarks import pictures as benchmark
from benchmarks import renderings
from mnist_digits import mnist_files, model_files, page, pictures
from mnist_digits.classifier import load_classifier
from mnist_digits.pictures import decode_picture, find_digits

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / model_files.DEFAULT_MODEL_DIR


@pytest.fixture(scope="module")
def test_digits(full_arrays):
    """The first 300 real test digits (uint8, light on dark) and their labels."""
    return full_arrays["x_test"][:300], full_arrays["y_test"][:300]


def encoded(image, fmt="PNG", **options):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def rendered_files(name, x):
    """The bytes of the file the benchmark writes for each digit of x in rendering `name`
    (with digits i+1, i+2 where it holds several)."""
    render = renderings.RENDERINGS[name][1]
    count = renderings.DIGITS_PER_FILE.get(name, 1)
    files = []
    for index, digit in enumerate(x):
        image, fmt, options = render(digit, index, *(x[(index + k) % len(x)] for k in range(1, count)))
        files.append(encoded(image, fmt, **options))
    return files


def read_bytes(data):
    digits, main = find_digits(decode_picture(data))
    return digits[main]


def glance_places(glance):
    return pictures.pixel_places(glance.shape, (0, 0), 1, glance.shape)


def disk_digit(size=28, outer=9.0, inner=5.0):
    """A ring (a 0) centred in a size x size black picture, light ink."""
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
    radius = np.hypot(yy, xx)
    return ((radius <= outer) & (radius >= inner)).astype(np.float32)


# --- A clean picture is read as its array ----------------------------------------------------

@pytest.mark.parametrize("dark_on_white", [False, True])
def test_a_28px_mnist_picture_is_read_as_exactly_its_array(test_digits, full_arrays,
                                                          dark_on_white):
    """Bit for bit, as the network gets the arrays (x / 255), either polarity: test digit 6561,
    a faint 7, read from the file through the picture steps was a 1."""
    x, _ = test_digits
    for digit in [*x, full_arrays["x_test"][6561]]:
        pixels = 255 - digit if dark_on_white else digit
        read = read_bytes(encoded(Image.fromarray(pixels)))
        np.testing.assert_array_equal(read, mnist_files.normalize_images(digit)[..., 0])


def test_a_28px_picture_not_in_mnists_form_goes_through_the_steps(test_digits):
    """A small digit in a 28x28 picture, or one off centre, is fitted and centred as MNIST's
    are; only a digit already fitted and centred is taken as it is."""
    digit = test_digits[0][0]
    small = np.zeros((28, 28), np.uint8)
    small[7:21, 7:21] = np.asarray(Image.fromarray(digit[4:24, 4:24]).resize((14, 14)))
    shifted = np.roll(digit, 3, axis=1)
    for pixels in (small, shifted):
        assert pictures.in_mnist_form(pixels / 255) is None
        read = read_bytes(encoded(Image.fromarray(pixels)))
        rows, cols = np.nonzero(read)
        assert max(np.ptp(rows), np.ptp(cols)) + 1 >= 19  # fitted to the 20x20 box
        assert np.abs(np.array(ndimage.center_of_mass(read)) - 14).max() <= 0.75


def test_bold_digits_once_refused_as_blank_are_read(full_arrays):
    """Test digits 495, 864, 3768, ...: bold 0s and 8s that the paper estimate took for paper."""
    for index in (495, 864, 3768, 4604, 4724, 7838, 7871, 7898, 8023, 8077):
        digit = full_arrays["x_test"][index]
        np.testing.assert_allclose(read_bytes(encoded(Image.fromarray(digit))), digit / 255,
                                   atol=1e-6)


# --- Each step --------------------------------------------------------------------------------

def test_the_ink_is_the_side_away_from_the_edges():
    ring = disk_digit()
    assert not pictures.paper_is_light(ring)
    assert pictures.paper_is_light(1 - ring)
    framed = np.ones((60, 60), np.float32)  # a black frame along the edges of white paper
    framed[[0, 1, -2, -1], :] = framed[:, [0, 1, -2, -1]] = 0
    framed[20:40, 28:31] = 0
    assert pictures.paper_is_light(framed)


def test_even_paper_is_one_level_and_a_clean_picture_keeps_its_pixels():
    ring = disk_digit()
    assert pictures.fit_paper(ring, glance_places(ring)) == 0
    grey = 0.2 + 0.7 * ring  # grey paper, ink on it
    paper = pictures.fit_paper(grey, glance_places(grey))
    assert np.ndim(paper) == 0 and paper == pytest.approx(0.2)


def test_a_bold_digit_covering_much_of_a_small_picture_is_not_paper():
    bold = disk_digit(outer=12.5, inner=3.0)  # ink on 60% of the picture
    assert 0.5 < bold.mean() < 0.7
    assert pictures.fit_paper(bold, glance_places(bold)) == 0
    np.testing.assert_allclose(read_bytes(encoded(Image.fromarray(np.uint8(255 * bold)))).sum(),
                               pictures.to_mnist_form(bold).sum(), rtol=1e-6)


def test_unevenly_lit_paper_is_fitted_and_taken_away():
    yy, xx = np.mgrid[0:64, 0:64] / 64
    paper = 0.1 + 0.5 * xx + 0.2 * yy * yy  # the dark side of light ink: paper in shadow
    grey = np.maximum(paper, disk_digit(64, 20, 12) * 0.95).astype(np.float32)
    fitted = pictures.fit_paper(grey, glance_places(grey))
    assert np.ndim(fitted) == 1
    ink = pictures.ink_above_paper(grey, fitted, glance_places(grey), light=False)
    assert np.abs(ink[disk_digit(64, 23, 9) == 0]).max() < 0.02
    assert ink[disk_digit(64, 19, 13) > 0].min() > 0.3


def test_the_noise_floor_is_measured_below_the_paper_whatever_the_ink():
    rng = np.random.default_rng(0)
    for ink_share in (0.1, 0.6):
        ink = rng.normal(0, 0.02, (80, 80)).astype(np.float32)
        ink[:, :int(80 * ink_share)] += 1
        floor, level = pictures.ink_levels(ink)
        assert 0.07 < floor < 0.13 and level == pytest.approx(1, abs=0.05)
    floor, level = pictures.ink_levels(np.zeros((20, 20), np.float32))
    assert floor == pictures.MIN_NOISE_FLOOR and level is None


def test_blurred_strokes_are_soft_and_keep_their_peaks(test_digits):
    x, _ = test_digits
    # grey ink (0.8), so that every one is fainter than MNIST's full ink
    blurred = [pictures.separate_ink(0.8 * ndimage.gaussian_filter(renderings.enlarged(digit, 56), 2))
               for digit in x[:50]]
    assert sum(soft for _, _, soft in blurred) >= 45
    for ink, mask, soft in blurred:  # the old scaling made 10% of the ink full, and flat
        assert not soft or np.count_nonzero(ink > 0.99) < 0.05 * np.count_nonzero(mask)
    assert not any(pictures.separate_ink(digit / 255)[2] for digit in x[:50])


def test_faint_flat_ink_is_made_full_and_ink_as_dark_as_mnists_is_left_alone():
    ring = disk_digit(64, 20, 12)
    ink, mask, soft = pictures.separate_ink(ring)
    assert not soft and np.array_equal(ink, ring) and np.array_equal(mask, ring > 0)
    ink, mask, soft = pictures.separate_ink(0.6 * ring)  # a light pen: faint, not soft
    assert not soft and np.allclose(ink, ring) and np.array_equal(mask, ring > 0)


def test_a_dark_speck_beside_faint_ink_does_not_make_it_fainter():
    pencil = 0.3 * disk_digit(128, 40, 30)
    dotted = pencil.copy()
    dotted[5:8, 5:8] = 1  # a pen's dot in the corner
    alone, with_dot = (read_bytes(encoded(Image.fromarray(np.uint8(255 * (1 - ink)))))
                       for ink in (pencil, dotted))
    assert with_dot.max() > 0.9 and np.abs(with_dot - alone).mean() < 0.05


def test_a_soft_digit_is_sharpened_at_mnists_scale_and_a_clean_one_is_not():
    blurred = ndimage.gaussian_filter(disk_digit(64, 20, 12), 3)
    blurred /= blurred.max()
    flat, sharp = (pictures.to_mnist_form(blurred, sharpen=sharpen) for sharpen in (False, True))
    (flat_full, flat_halo), (sharp_full, sharp_halo) = (
        (np.count_nonzero(digit > 0.9), np.count_nonzero((digit > 0.01) & (digit < 0.3)))
        for digit in (flat, sharp))
    assert sharp_full > 1.2 * flat_full and sharp_halo < 0.9 * flat_halo
    clean = np.uint8(255 * ndimage.zoom(disk_digit(), 2, order=1))  # full ink, soft edges
    np.testing.assert_allclose(read_bytes(encoded(Image.fromarray(clean))),
                               pictures.to_mnist_form(clean / 255), atol=1e-6)


def test_blurred_pictures_are_read_sharpened(test_digits, monkeypatch):
    x, _ = test_digits
    files = rendered_files("56 px blurred 2 px", x[:10])
    full_ink = lambda: sum(np.count_nonzero(read_bytes(file) > 0.9) for file in files)
    sharpened = full_ink()
    monkeypatch.setattr(pictures, "SHARPEN", 0)
    assert sharpened > 1.2 * full_ink()


def test_a_large_picture_is_read_at_the_digits_scale(test_digits):
    x, _ = test_digits
    scan = Image.fromarray(255 - x[0]).resize((280, 280), Image.Resampling.BICUBIC)
    work = pictures.ink_at_digit_scale(np.asarray(scan, np.float32) / 255)
    assert 64 <= np.ptp(np.nonzero(work > 0.4)[0]) <= 2 * pictures.DIGIT_SIZE
    assert max(work.shape) < 140


def test_a_small_digit_on_a_large_page_is_cropped_around_it(test_digits):
    x, _ = test_digits
    page = np.ones((900, 700), np.float32)
    page[500:556, 100:156] = 1 - np.asarray(Image.fromarray(x[0]).resize((56, 56)), np.float32) / 255
    work = pictures.ink_at_digit_scale(page)
    assert max(work.shape) < 100 and work.max() > 0.9


def test_a_blank_picture_seen_at_a_glance_has_no_digit():
    noisy = np.clip(np.random.default_rng(1).normal(0.8, 0.03, (300, 300)), 0, 1).astype(np.float32)
    with pytest.raises(ValueError, match="blank"):
        pictures.ink_at_digit_scale(noisy)


def test_without_a_long_line_no_line_is_removed():
    ink = disk_digit(40, 15, 10)
    ink[5:35, 19:21] = 1  # a stroke down most of the picture, not 80% of it
    mask = ink > 0.5
    kept_ink, kept_mask = pictures.remove_ruled_lines(ink.copy(), mask)
    assert np.array_equal(kept_mask, mask) and np.array_equal(kept_ink, ink)


def test_a_ruled_line_is_removed_and_the_stroke_across_it_stays():
    ink = np.zeros((60, 60), np.float32)
    ink[30, :] = 1  # a thin ruled line across the page
    ink[10:50, 26:32] = 1  # a stroke six times thicker crossing it
    _, strokes = pictures.remove_ruled_lines(ink, ink > 0.5)
    assert not strokes[30, :20].any() and not strokes[30, 40:].any()
    assert strokes[10:50, 26:32].all()


def cropped(ink):
    rows, cols = np.nonzero(ink)
    return ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def stroke_width(ink):
    """Area over half the perimeter of the ink, as a fraction of its longer side."""
    mask = ink > 0.4
    return 2 * mask.sum() / (mask & ~ndimage.binary_erosion(mask)).sum() / max(ink.shape)


def test_strokes_of_mnist_width_are_not_thickened(test_digits):
    x, _ = test_digits
    for digit in x:
        ink = cropped(digit / 255)
        assert pictures.thicken_thin_strokes(ink) is ink


def test_a_thin_pen_is_thickened_to_about_mnist_width():
    image = Image.new("L", (200, 200), 0)
    ImageDraw.Draw(image).line([(40, 30), (160, 30), (90, 170)], fill=255, width=2)
    thin = cropped(np.asarray(image, np.float32) / 255)
    assert stroke_width(thin) < 0.2 * pictures.MNIST_STROKE
    thick = pictures.thicken_thin_strokes(thin)
    assert 0.7 * pictures.MNIST_STROKE < stroke_width(cropped(thick)) < 1.3 * pictures.MNIST_STROKE


def test_digits_side_by_side_are_grouped_left_to_right():
    page = np.zeros((40, 100), bool)
    page[5:35, 10:16] = True  # a 1
    page[5:35, 50:80] = disk_digit(30, 14, 9)[:, :] > 0  # a 0
    page[20:23, 85:88] = True  # a dot: not a digit
    groups = pictures.group_into_digits(page)
    assert len(groups) == 2 and groups[0][:, :20].any() and groups[1][:, 50:80].any()


def test_a_short_piece_within_one_digits_box_joins_it_and_two_ones_stay_two():
    five = np.zeros((28, 28), bool)
    five[6:9, 16:26] = True  # the top bar, drawn apart from the body
    five[11:25, 7:13] = True
    assert len(pictures.group_into_digits(five)) == 1
    ones = np.zeros((28, 28), bool)
    ones[4:24, 6:9] = ones[4:24, 18:21] = True
    assert len(pictures.group_into_digits(ones)) == 2


def test_a_digit_broken_in_two_one_part_above_the_other_is_one_digit():
    five = np.zeros((28, 28), bool)  # validation digit 57055's 5: its bar and bowl apart
    five[7:15, 10:25] = True
    five[16:24, 5:12] = True
    assert len(pictures.group_into_digits(five)) == 1
    nine = np.zeros((28, 28), bool)  # and 58539's 9: its loop and tail, staggered
    nine[6:17, 8:14] = True
    nine[13:26, 16:22] = True
    assert len(pictures.group_into_digits(nine)) == 1
    two = np.zeros((40, 40), bool)  # but two digits on a sloping line stay two
    two[5:25, 3:17] = two[12:32, 20:34] = True
    assert len(pictures.group_into_digits(two)) == 2


def test_a_speck_inside_a_digits_box_is_part_of_it_and_one_outside_is_not():
    page = np.zeros((40, 60), bool)
    page[5:35, 10:30] = disk_digit(30, 14, 9)[:, 5:25] > 0  # a 0
    page[6:8, 29] = True  # the end of a stroke, apart: inside its box
    page[20:22, 50:52] = True  # a speck of dust outside it
    (digit,) = pictures.group_into_digits(page)
    assert digit[6:8, 29].all() and not digit[20:22, 50:52].any()


def test_faint_ink_inside_a_digits_box_is_kept_and_faint_ink_outside_is_not():
    ink = np.zeros((40, 60), np.float32)
    ink[5:35, 10:30] = disk_digit(30, 14, 9)[:, 5:25]  # a 0
    ink[18:21, 18:21] = 0.2  # a faint bit of it, in its hole
    ink[20:22, 50:52] = 0.2  # faint dust away from it
    group = ink > 0.5
    pieces, count = ndimage.label(ink > 0, np.ones((3, 3)))
    kept = pictures.digit_ink(ink, group, pieces, count, np.zeros_like(group))
    assert kept.shape == cropped(group).shape and np.count_nonzero(kept == np.float32(0.2)) == 9


def test_a_digit_already_in_mnist_form_is_left_as_it_is(test_digits):
    x, _ = test_digits
    for digit in x[:50]:
        np.testing.assert_allclose(pictures.to_mnist_form(digit / 255), digit / 255, atol=1e-6)


# --- The benchmark's clean renderings ---------------------------------------------------------

@pytest.fixture(scope="module")
def model():
    if not (SHIPPED / "model.keras").is_file():
        pytest.skip(f"the shipped model is missing ({SHIPPED})")
    return mdr.load_model(SHIPPED)


def test_clean_renderings_lose_no_answer(model, test_digits):
    """A digit the model reads from its array is read from each clean rendering of it."""
    x, y = test_digits
    right = mdr.predict(model, x)[0] == y
    clean = [name for name, (kind, _) in renderings.RENDERINGS.items() if kind == "clean"]
    assert len(clean) == 7
    lost = {}
    for name in clean:
        read = [read_bytes(file) for file in rendered_files(name, x)]
        answers = mdr.predict(model, np.stack(read))[0]
        lost[name] = np.flatnonzero(right & (answers != y)).tolist()
    assert lost == {name: [] for name in clean}


def test_hard_renderings_are_read_about_as_well_as_the_plain_recipe_reads_them(model, test_digits):
    """Blurred, coarse, thick and thin renderings: read about as well as the plain MNIST recipe
    reads them, or better (on 300 digits, within 1%: the benchmark measures the rest)."""
    x, y = test_digits
    hard = [name for name, (kind, _) in renderings.RENDERINGS.items() if kind == "hard"]
    assert len(hard) == 7
    right = {}
    for name in hard:
        files = rendered_files(name, x)
        ours = [read_bytes(file) for file in files]
        plain = [benchmark.plain_recipe(benchmark.read_grey(io.BytesIO(file))) for file in files]
        right[name] = [int(np.sum(mdr.predict(model, np.stack(images))[0] == y))
                       for images in (ours, plain)]
    assert not {name: (ours, plain) for name, (ours, plain) in right.items()
                if ours < plain - 0.01 * len(x)}, right


# --- A page photographed on a table -----------------------------------------------------------

def sheet_on_table(angle):
    """A 300x400 photo: a light sheet turned by angle degrees on a dark table, a dark bar
    across the sheet's middle (along its rows)."""
    sheet = Image.new("L", (200, 260), 230)
    ImageDraw.Draw(sheet).rectangle([40, 125, 160, 135], fill=20)
    photo = Image.new("L", (400, 300), 40)
    turned = sheet.rotate(angle, expand=True, fillcolor=0)
    mask = Image.new("L", sheet.size, 255).rotate(angle, expand=True, fillcolor=0)
    photo.paste(turned, (200 - turned.width // 2, 150 - turned.height // 2), mask)
    return np.asarray(photo, np.float32) / 255


def sheet_at_a_slant(corners):
    """A 300x400 photo of sheet_on_table's sheet taken a little from the side, on a darker
    table: its corners (top left, top right, bottom right, bottom left; (x, y)) where
    `corners` puts them."""
    sheet = Image.new("L", (200, 260), 230)
    ImageDraw.Draw(sheet).rectangle([40, 125, 160, 135], fill=20)
    how = (Image.Transform.PERSPECTIVE,
           renderings.perspective(corners, [(0, 0), (200, 0), (200, 260), (0, 260)]))
    photo = sheet.transform((400, 300), *how, Image.Resampling.BILINEAR, fillcolor=0)
    mask = Image.new("L", sheet.size, 255).transform((400, 300), *how, fillcolor=0)
    return np.asarray(Image.composite(photo, Image.new("L", (400, 300), 10), mask),
                      np.float32) / 255


def on_the_page(grey):
    """The picture as the page step leaves it: the sheet it shows, upright, or as it is."""
    glance, factor = pictures.glance_at(grey)
    sheet = page.sheet_in(glance)
    return grey if sheet is None else page.cut_out(grey, sheet, factor)


@pytest.mark.parametrize("angle", [0, 8, -14])
def test_a_sheet_on_a_table_is_cut_out_and_turned_upright(angle):
    upright = on_the_page(sheet_on_table(angle))
    assert upright.min() > 0.05 and 0.8 < np.median(upright) < 0.95  # no table left
    bar = upright < 0.5
    rows = np.flatnonzero(bar.any(axis=1))
    assert np.ptp(rows) <= 14  # the bar (11 rows) runs along the rows again
    assert bar.shape[0] / bar.shape[1] == pytest.approx(260 / 200, abs=0.05)


@pytest.mark.parametrize("corners", [
    [(120, 30), (285, 30), (305, 275), (100, 275)],  # the top narrower than the bottom
    [(100, 30), (305, 20), (285, 275), (120, 285)],  # and turned
])
def test_a_sheet_photographed_a_little_from_the_side_leaves_no_table(corners):
    """Its sides not parallel, the rectangle around it holds some table: painted as paper."""
    upright = on_the_page(sheet_at_a_slant(corners))
    assert upright.min() > 0.05 and 0.8 < np.median(upright) < 0.95  # no table left
    bar = upright < 0.5
    assert bar.any(axis=1).sum() <= 20  # the bar alone, along the rows


def test_a_stroke_written_to_the_sheets_edge_is_kept():
    """Ink that reaches the paper's edge is no table: the stroke is cut out with the sheet."""
    sheet = Image.new("L", (200, 260), 230)
    ImageDraw.Draw(sheet).rectangle([95, 150, 105, 260], fill=20)
    photo = Image.new("L", (400, 300), 40)
    turned = sheet.rotate(8, expand=True, fillcolor=0)
    mask = Image.new("L", sheet.size, 255).rotate(8, expand=True, fillcolor=0)
    photo.paste(turned, (200 - turned.width // 2, 150 - turned.height // 2), mask)
    upright = on_the_page(np.asarray(photo, np.float32) / 255)
    rows = np.flatnonzero((upright < 0.5).any(axis=1))
    assert rows.max() >= 0.9 * upright.shape[0]  # down to the cut-out's edge, or nearly


def test_the_page_step_leaves_every_other_rendering_as_it_is(test_digits):
    """All paper, light ink on black, ruled lines, a frame: no sheet on a darker surround."""
    x, _ = test_digits
    for name, (kind, _) in renderings.RENDERINGS.items():
        if kind != "page":
            for file in rendered_files(name, x[:30]):
                glance, _ = pictures.glance_at(decode_picture(file))
                assert page.sheet_in(glance) is None, name


@pytest.fixture(scope="module")
def classify():
    if not (SHIPPED / "model.keras").is_file():
        pytest.skip(f"the shipped model is missing ({SHIPPED})")
    return load_classifier(SHIPPED)


def answers(classify, file):
    digits, _ = find_digits(decode_picture(file))
    return classify(digits[..., np.newaxis]).argmax(axis=1).tolist()


def test_a_page_on_a_table_reads_like_the_digit_itself(classify, test_digits):
    """Photos of a page on a dark or a wooden table, tilted by up to 15 degrees, or taken a little
    from the side, light falling off: read as the model reads the digit's array (the
    benchmark: 10,000 digits)."""
    x = test_digits[0][:100]
    arrays = classify(x[..., np.newaxis] / np.float32(255)).argmax(axis=1).tolist()
    for name in ("page on a dark table, tilted 0-15°", "page on a wooden table, tilted 0-15°",
                 "page on a dark table, at a slant"):
        read = [answers(classify, file) for file in rendered_files(name, x)]
        assert sum(r != [a] for r, a in zip(read, arrays)) <= 1, name
