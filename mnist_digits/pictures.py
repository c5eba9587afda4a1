"""People's pictures of digits -> MNIST's 28x28 form.

A picture may be of any size, light on dark or dark on light, a scan or a photo (uneven light,
ruled paper, a frame, turned by its EXIF orientation), and hold several digits side by side.
`read_picture(path)` and `find_digits(grey)` return each digit as MNIST stores its own: light
ink on black, cropped, fitted to a 20x20 box and centred by its centre of mass in 28x28. A
photo of a sheet of paper on a darker table is read as the sheet alone, upright (page.py).

NumPy, SciPy and Pillow only: importing this module loads no TensorFlow.
"""

import io
import math
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage

from . import page

FORMATS = ["PNG", "JPEG", "BMP", "GIF"]
NOT_AN_IMAGE = "not a PNG, JPEG, BMP or GIF image"
MAX_PIXELS = 50_000_000
MAX_FILE_BYTES = 200_000_000
WORK_SIZE = 1200  # longer pictures are first reduced to this many pixels on their long side
GLANCE_SIZE = 128  # the picture reduced to at most this, to find its ink, paper and digits
DIGIT_SIZE = 64  # the steps measure strokes on digits reduced to about this height (or smaller)
PAPER_FIT_SIZE = 48  # the paper's light is fitted on at most this many pixels across
EVEN_PAPER = 0.08  # paper whose light varies less than this is taken as evenly lit
FLAT_PAPER = 0.02  # paper that varies less than this needs no fitting at all
FULL_INK = 0.9  # typical ink this strong is MNIST's full ink; fainter ink is scaled up to it
PEAKED = 0.9  # ...unless typical ink is under this share of the strongest: soft strokes
SOFTEST = 0.6  # soft ink's typical ink is scaled to at least this (a dark speck sets no scale)
SHARPEN = 0.5  # a soft digit's detail (what a 1-pixel blur takes away at MNIST's scale) x 1.5
MIN_NOISE_FLOOR = 0.5 / 255  # a clean picture's faintest ink is ink
MNIST_STROKE = 0.14  # MNIST's median stroke width, as a fraction of the digit's longer side
MNIST_SIZE, MNIST_BOX = 28, 20  # MNIST's digits: 28x28, the ink fitted into a 20x20 box
MNIST_CENTRED = 0.75  # ...its centre of mass this close to the centre (pixels, each way)
SURE_INK = 0.4  # ink above this share of the typical ink's level is surely ink: strokes, not
                # the paper's noise or their own soft edges
SPECK = 0.02  # a piece of ink under this share of the largest piece's pixels is a speck
EDGE_BAND = 0.1  # the picture's edges: a band of this share of its shorter side, all round
# Two pieces of ink are one digit (belong_together) where their columns overlap by half the
# narrower's width; or where one is much shorter or stands above the other, and they nearly
# touch or fit in one digit's box.
SHARED_COLUMNS = 0.5  # of the narrower's width (a 4 drawn in two strokes)
MUCH_SHORTER = 0.6  # of the taller's height (a 5's loose top bar)
ABOVE = 2 / 3  # the shorter at most this share of their joint height: digits side by side
               # share most of their height
NEARLY_TOUCHING = 0.2  # a gap under this share of the taller's height (a 9's loop and tail)
ONE_BOX = 1.2  # both within a box no wider than this times its height (a 5's bar drawn apart)


def decode_picture(data):
    """The bytes of a PNG, JPEG, BMP or GIF file -> grey float32 (H, W) in [0, 1], upright (as
    its EXIF orientation says) and with any transparency composited onto white paper."""
    try:
        with warnings.catch_warnings():  # we refuse such images ourselves, below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)  # reads only the header
    except Image.DecompressionBombError:
        image = None
    except Exception:
        raise ValueError(NOT_AN_IMAGE) from None
    if image is None or image.width * image.height > MAX_PIXELS:
        raise ValueError(f"the image is too large (over {MAX_PIXELS // 1_000_000} megapixels)")
    try:
        image.load()  # decodes every pixel, so a truncated file fails here
        image = ImageOps.exif_transpose(image)
        if image.mode.startswith("I"):  # 16-bit grey: Pillow's convert("L") would clip it
            image, white = image.convert("I"), 65535
        else:
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                image = Image.alpha_composite(Image.new("RGBA", image.size, "white"),
                                              image.convert("RGBA"))
            image, white = image.convert("L"), 255
        image = image.reduce(max(1, max(image.size) // WORK_SIZE))  # a big scan: less memory
        return np.clip(np.asarray(image, np.float32) / white, 0, 1)
    except Exception:  # Pillow raises many kinds of error on a damaged file
        raise ValueError(f"a {image.format} file that is damaged or cut short") from None


def find_digits(grey, split=None):
    """The digits in a grey picture (either polarity), left to right, each in MNIST's form
    (K, 28, 28), and the index of the main one: the tallest (then the one with most ink).
    Soft strokes are told apart on the whole picture: all its digits are sharpened, or none.
    A picture already in MNIST's form is its own digit, as it is (in_mnist_form). `split`
    (touching.splitter's) cuts the marks that hold digits that touch into those digits."""
    as_is = in_mnist_form(grey)
    if as_is is not None:
        return as_is[np.newaxis], 0
    inks, sizes, soft = digits_ink(grey)
    marks = [mnist_mark(ink, soft) for ink in inks]
    if split is not None:
        marks, sizes = split(inks, marks, sizes, soft)
    return np.stack(marks), main_index(sizes)


def digits_ink(grey):
    """(inks, sizes, soft) of a grey picture not already in MNIST's form: each digit's ink, left
    to right, cropped to it (digit_ink); each one's size (the height of its strokes, then their
    pixels: main_index); and whether the picture's strokes are soft (separate_ink)."""
    ink, mask, soft = separate_ink(ink_at_digit_scale(reduce_to_work_size(grey)))
    ink, mask = remove_ruled_lines(ink, mask)
    groups = group_into_digits(mask)
    if not groups:
        raise ValueError("no digit found (the image is blank)")
    sizes = [(np.ptp(np.flatnonzero(group.any(axis=1))), np.count_nonzero(group)) for group in groups]
    pieces, count = ndimage.label(ink > 0, np.ones((3, 3)))
    all_digits = np.any(groups, axis=0)
    return [digit_ink(ink, group, pieces, count, all_digits & ~group) for group in groups], sizes, soft


def mnist_mark(ink, soft):
    """One digit's ink (digits_ink) in MNIST's form: thin strokes thickened, then to_mnist_form."""
    return to_mnist_form(thicken_thin_strokes(ink), sharpen=soft)


def main_index(sizes):
    """The index of the main digit: the tallest, then the one with most ink."""
    return max(range(len(sizes)), key=sizes.__getitem__)


def in_mnist_form(grey):
    """The picture's ink if it is already an MNIST digit, else None: 28x28, light on black or
    dark on white, its ink fitted to the 20x20 box (its longer side 19 or 20 pixels, as all of
    MNIST's 70,000 are) and its centre of mass within MNIST_CENTRED of the centre (MNIST's are
    within 0.52 pixels). An 8-bit picture's ink is then exactly the array of MNIST's pixels
    (x / 255), whichever its polarity, and is measured as that."""
    if grey.shape != (MNIST_SIZE, MNIST_SIZE):
        return None
    ink = grey if np.median(grey) < 0.5 else 1 - grey
    levels = np.round(ink * 255)
    if np.abs(ink * 255 - levels).max() < 1e-3:  # 8 bits: inverting them left float noise
        ink = levels / 255
    ink = ink.astype(np.float32)
    rows, cols = ink.sum(axis=1, dtype=np.float64), ink.sum(axis=0, dtype=np.float64)
    span = lambda sums: np.ptp(np.flatnonzero(sums)) + 1  # from the first inked line to the last
    if not rows.any() or not MNIST_BOX - 1 <= max(span(rows), span(cols)) <= MNIST_BOX:
        return None
    centre = np.array([rows, cols]) @ np.arange(MNIST_SIZE) / rows.sum()  # the centre of mass
    return None if np.abs(centre - MNIST_SIZE / 2).max() > MNIST_CENTRED else ink


def reduce_to_work_size(grey):
    scale = WORK_SIZE / max(grey.shape)
    if scale >= 1:
        return grey.astype(np.float32)
    size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
    return np.asarray(Image.fromarray(grey.astype(np.float32)).resize(size, Image.Resampling.BOX))


def ink_at_digit_scale(grey):
    """The picture's ink, light on black and 0 on the paper, cropped around the digits and
    reduced so that they are about DIGIT_SIZE pixels tall (never enlarged): the steps after
    this measure strokes at the digits' own scale, and a large picture costs little. Decided
    on a glance (the picture reduced to at most GLANCE_SIZE pixels): which side is the ink,
    the paper's light, where the digits are. A sheet photographed on a table: the sheet alone."""
    glance, factor = glance_at(grey)
    sheet = page.sheet_in(glance)
    if sheet is not None:
        grey = page.cut_out(grey, sheet, factor)
        glance, factor = glance_at(grey)
    light = paper_is_light(glance)
    if light:
        grey, glance = 1 - grey, 1 - glance
    places = pixel_places(glance.shape, (0, 0), factor, grey.shape)
    paper = fit_paper(glance, places)
    if max(grey.shape) < 2 * DIGIT_SIZE:  # small enough to be read whole, as it is
        return ink_above_paper(grey, paper, places, light)
    box = ink_box(ink_above_paper(glance, paper, places, light))
    if box is None:  # the glance averages the paper's noise away, not a digit's ink
        raise ValueError("no digit found (the image is blank)")
    top, left, bottom, right = (factor * side for side in box)
    reduction = max(1, (bottom - top) // DIGIT_SIZE)
    margin = (bottom - top + right - left) // 6 + 2 * reduction
    top, left = (max(0, side - margin) for side in (top, left))
    work = reduced(np.ascontiguousarray(grey[top:bottom + margin, left:right + margin]), reduction)
    places = pixel_places(work.shape, (top, left), reduction, grey.shape)
    return ink_above_paper(work, paper, places, light)


def glance_at(grey):
    """(the glance, its factor): the picture reduced by factor to at most GLANCE_SIZE pixels."""
    factor = max(1, math.ceil(max(grey.shape) / GLANCE_SIZE))
    return reduced(grey, factor), factor


def reduced(grey, factor):
    """Each factor x factor block averaged (the picture unchanged when factor is 1)."""
    return grey if factor == 1 else np.asarray(Image.fromarray(grey).reduce(factor))


def pixel_places(shape, origin, factor, whole):
    """(rows as a column, columns as a row): where the centres of the pixels of a picture of
    `shape`, reduced by `factor` from `origin` of the whole picture, fall on it (0 to 1)."""
    rows, cols = ((start + factor * (np.arange(n) + 0.5)) / length
                  for start, n, length in zip(origin, shape, whole))
    return rows[:, np.newaxis], cols[np.newaxis, :]


def paper_is_light(glance):
    """Dark ink on light paper: the picture's edges (mostly paper, even with a frame drawn
    along them) are nearer its brightest."""
    band = edge_band(glance)
    edges = np.ones(glance.shape, bool)
    edges[band:-band, band:-band] = False
    return np.median(glance[edges]) > (glance.min() + glance.max()) / 2


def edge_band(glance):
    """The width in pixels of the band of the picture's edges."""
    return max(1, round(EDGE_BAND * min(glance.shape)))


def fit_paper(glance, places):
    """The paper's brightness (ink light, paper dark): a quadratic surface over the picture
    (coefficients of surface_terms) fitted to pixels of the glance that are not ink, or one
    level where the paper is evenly lit, so that a clean picture keeps its pixels exactly."""
    step = max(1, math.ceil(max(glance.shape) / PAPER_FIT_SIZE))  # a smooth surface: few pixels do
    values = glance[::step, ::step].ravel()
    # At first, paper is what is no brighter than most of the edges, and than half the picture:
    # a bold digit may cover more than half of a small picture, never most of its edges.
    band = edge_band(glance)
    edges = np.concatenate([glance[:band].ravel(), glance[-band:].ravel(),
                            glance[:, :band].ravel(), glance[:, -band:].ravel()])
    paper = values <= min(np.median(values), percentile(edges, 75))
    if np.ptp(values[paper]) < FLAT_PAPER:  # a clean picture's paper: nothing to fit
        return np.median(values[paper])
    rows, cols = places[0][::step], places[1][:, ::step]
    terms = np.stack(np.broadcast_arrays(*surface_terms(rows, cols)), axis=-1).reshape(-1, 6)
    for _ in range(3):
        coefficients = np.linalg.lstsq(terms[paper].T @ terms[paper], terms[paper].T @ values[paper],
                                       rcond=None)[0]
        residual = values - terms @ coefficients
        spread = 1.4826 * np.median(np.abs(residual[paper]))
        paper = residual <= max(3 * spread, 0.02)
    if np.ptp(terms @ coefficients) < EVEN_PAPER:
        return np.median(values[paper])
    return coefficients


def surface_terms(y, x):
    return [np.ones_like(y), y, x, y * y, y * x, x * x]


def ink_above_paper(picture, paper, places, light):
    """Ink over the paper (light ink, dark paper): around 0 where the paper shows, below it
    where its noise is. On light paper, as a fraction of the light the paper reflects (ink
    in the shade is as dark, against its paper, as ink in the light)."""
    level = paper if np.ndim(paper) == 0 else sum(c * term for c, term in
                                                  zip(paper, surface_terms(*places)))
    ink = picture - level
    return (ink / np.maximum(1 - level, 0.2) if light else ink).astype(np.float32)


def ink_box(ink):
    """(top, left, bottom, right) around the ink that is surely ink (specks dropped), or None."""
    floor, level = ink_levels(ink)
    if level is None:
        return None
    labels, count = ndimage.label(ink > max(floor, SURE_INK * level), np.ones((3, 3)))
    sizes = np.bincount(labels.ravel())[1:]
    boxes = [box for box, size in zip(ndimage.find_objects(labels), sizes)
             if size >= SPECK * sizes.max()]
    return (min(b[0].start for b in boxes), min(b[1].start for b in boxes),
            max(b[0].stop for b in boxes), max(b[1].stop for b in boxes))


def ink_levels(ink):
    """(noise floor, level of typical ink) of ink_above_paper's values: ink under the floor
    is the paper's noise; level is None where nothing rises above it. The noise is measured
    on the paper darker than its estimate, which ink never is, however much ink there is."""
    below = ink[ink < 0]
    noise = np.sqrt(np.mean(below ** 2)) if below.size else 0
    floor = max(MIN_NOISE_FLOOR, 5 * noise)
    above = ink[ink > floor]
    return floor, percentile(above, 90) if above.size else None


def separate_ink(ink):
    """(ink, mask, soft): the ink, 0 under the noise floor; the mask where it is surely ink,
    not noise; soft: whether its strokes are soft. Ink as dark as MNIST's is left as it is.
    Fainter ink that is flat (a light or coloured pen) is scaled so that typical ink is 1.
    Fainter ink that is peaked, typical ink well under the strongest, is soft (typically a
    blur, or a digit enlarged from a few pixels): it is scaled so that its strongest is 1,
    keeping the peaks, which the network reads better than strokes made flat (and
    to_mnist_form sharpens it)."""
    floor, level = ink_levels(ink)
    if level is None:
        raise ValueError("no digit found (the image is blank)")
    if level >= FULL_INK:
        return np.where(ink > floor, ink, 0).astype(np.float32), ink > max(floor, SURE_INK), False
    strongest = min(percentile(ink[ink > floor], 99.5), level / SOFTEST)
    soft = bool(level < PEAKED * strongest)
    scale = strongest if soft else level
    return (np.where(ink > floor, ink / scale, 0).astype(np.float32),
            ink > max(floor, SURE_INK * level), soft)


def remove_ruled_lines(ink, mask):
    """Take out thin straight lines across 80% of the picture (ruled lines, a frame): ink
    under half as thick as the handwriting, measured across the line. Where a stroke crosses
    or runs along such a line the ink is thicker, so it stays. No long line, nothing done."""
    runs = [long_runs(mask, axis) for axis in (0, 1)]
    if not any(run.any() for run in runs):
        return ink, mask
    distance = ndimage.distance_transform_edt(mask)
    half_stroke = math.ceil(percentile(distance[mask], 90))
    lines = np.zeros_like(mask)
    for axis, run in zip((0, 1), runs):
        across = np.ones((1, half_stroke) if axis == 0 else (half_stroke, 1), bool)
        lines |= run & mask & ~ndimage.binary_opening(mask, across)
    strokes = mask & ~lines
    ink[ndimage.binary_dilation(lines) & ~strokes] = 0  # the lines with their soft edges
    return ink, strokes


def long_runs(mask, axis):
    """Where the mask runs on along the axis for 80% of the picture, within a band that lets
    the run be tilted by up to about 2 degrees (axis 0: down the columns)."""
    slack = max(1, round(0.02 * max(mask.shape)))
    band = ndimage.maximum_filter1d(mask, 2 * slack + 1, axis=1 - axis)
    length = int(0.8 * mask.shape[axis]) | 1  # odd, so that the two filters line up
    runs = ndimage.minimum_filter1d(band, length, axis=axis, mode="constant")
    return ndimage.maximum_filter1d(runs, length, axis=axis)


def group_into_digits(mask):
    """Pieces of ink grouped into digits, left to right, as boolean masks. Specks (pieces
    under 2% of the largest's pixels) are left aside first; then groups under a third of the
    tallest's height (a dash, a dot) or under 5 pixels tall are dropped. A speck inside a
    digit's box is a bit of it (the end of a 5's bar, drawn apart); the others are dropped."""
    labels, count = ndimage.label(mask, np.ones((3, 3)))
    if count == 0:
        return []
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    boxes = ndimage.find_objects(labels)
    pieces = [(number, box) for number, box in enumerate(boxes, 1)
              if sizes[number - 1] >= SPECK * sizes.max()]
    specks = [(number, box) for number, box in enumerate(boxes, 1)
              if sizes[number - 1] < SPECK * sizes.max()]
    groups = []  # [label numbers, rows, columns]
    for number, (rows, cols) in sorted(pieces, key=lambda piece: piece[1][1].start):
        if groups and belong_together(groups[-1][1:], (rows, cols)):
            numbers, group_rows, group_cols = groups[-1]
            groups[-1] = [numbers + [number], union(group_rows, rows), union(group_cols, cols)]
        else:
            groups.append([[number], rows, cols])
    height = lambda rows: rows.stop - rows.start
    tallest = max(height(rows) for _, rows, _ in groups)
    kept = [group for group in groups if height(group[1]) >= max(tallest / 3, 5)]
    for number, (r, c) in specks:  # to the first digit whose box holds it
        holder = next((numbers for numbers, rows, cols in kept
                       if within(r, rows) and within(c, cols)), None)
        if holder is not None:
            holder.append(number)
    return [in_pieces(labels, count, numbers) for numbers, rows, _ in kept]


def within(inner, outer):
    return outer.start <= inner.start and inner.stop <= outer.stop


def in_pieces(labels, count, numbers):
    """Where the labels (0 to count) are any of the numbers: np.isin, by a lookup table."""
    wanted = np.zeros(count + 1, bool)
    wanted[numbers] = True
    return wanted[labels]


def belong_together(a, b):
    """Two pieces of one digit (the numbers above: SHARED_COLUMNS to ONE_BOX)."""
    (a_rows, a_cols), (b_rows, b_cols) = a, b
    overlap = min(a_cols.stop, b_cols.stop) - max(a_cols.start, b_cols.start)
    narrower = min(a_cols.stop - a_cols.start, b_cols.stop - b_cols.start)
    short, tall = sorted((a_rows.stop - a_rows.start, b_rows.stop - b_rows.start))
    rows, cols = union(a_rows, b_rows), union(a_cols, b_cols)
    above = short <= ABOVE * (rows.stop - rows.start)
    one_box = cols.stop - cols.start <= ONE_BOX * (rows.stop - rows.start)
    return overlap >= SHARED_COLUMNS * narrower or (
        (short <= MUCH_SHORTER * tall or above)
        and (overlap >= -NEARLY_TOUCHING * tall or one_box))


def union(a, b):
    return slice(min(a.start, b.start), max(a.stop, b.stop))


def digit_ink(ink, group, pieces, count, others):
    """One digit's ink, cropped to it: the whole pieces of ink, down to the noise floor, that its
    strokes are part of (its soft edges, a faint stretch of a stroke, its bits), all of which
    MNIST keeps. Where that faint ink joins it to something else (another digit, or a ruled line
    too light to be taken for a stroke, running from edge to edge), only the ink next to its
    strokes; elsewhere, also the pieces that lie within its box (its specks: MNIST keeps them).
    `pieces`: the picture's ink labelled (0 to count) by its connected pieces."""
    numbers = np.setdiff1d(pieces[group], [0])
    region = in_pieces(pieces, count, numbers)
    if (region & others).any() or reaches_across(region):
        region = ndimage.binary_dilation(group, iterations=2)
    elif count > len(numbers):  # pieces apart from it: those within its box are its specks
        region |= in_pieces(pieces, count, pieces_within(pieces, region)) & ~others
    ink = np.clip(ink * region, 0, 1)
    rows, cols = np.nonzero(ink)
    return ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def pieces_within(pieces, region):
    """The numbers of the labelled pieces that lie within the region's box."""
    rows, cols = ndimage.find_objects(region.astype(np.uint8))[0]
    return [number for number, (r, c) in enumerate(ndimage.find_objects(pieces), 1)
            if within(r, rows) and within(c, cols)]


def reaches_across(region):
    """The region touches two opposite edges of the picture."""
    rows, cols = region.any(axis=1), region.any(axis=0)
    return bool(rows[0] and rows[-1]) or bool(cols[0] and cols[-1])


def thicken_thin_strokes(ink):
    """A digit drawn with a thin pen, its strokes widened to about MNIST's width (a disk
    dilation, by the distance transform). MNIST-like strokes are left as they are."""
    size = max(ink.shape)
    mask = ink > SURE_INK * percentile(ink[ink > 0], 90)  # its strokes, however faint its ink
    edge_pixels = np.count_nonzero(mask & ~ndimage.binary_erosion(mask))
    width = 2 * np.count_nonzero(mask) / max(edge_pixels, 1)  # area over half the perimeter
    if width >= 0.6 * MNIST_STROKE * size:
        return ink
    radius = (MNIST_STROKE * size - width) / 2
    ink, mask = np.pad(ink, math.ceil(radius) + 1), np.pad(mask, math.ceil(radius) + 1)
    grown = np.clip(radius + 1 - ndimage.distance_transform_edt(~mask), 0, 1)
    return np.maximum(ink, grown)


def percentile(values, q):
    """np.percentile(values, q), to the last bit, in a tenth of its time on the few hundred
    pixels of a digit: np.partition finds the two values it interpolates between."""
    quantile = q / 100
    place = values.size * quantile + (1 + quantile * -1) - 1  # as np.percentile computes it
    low = math.floor(place)
    high = min(low + 1, values.size - 1)
    below, above = np.partition(values, [low, high])[[low, high]]
    fraction, difference = place - low, above - below
    # numpy's interpolation, exact at both ends
    return above - difference * (1 - fraction) if fraction >= 0.5 else below + difference * fraction


def to_mnist_form(ink, sharpen=False):
    """Light ink on black -> MNIST's 28x28: cropped to the ink, scaled to fit a 20x20 box
    keeping its aspect ratio (then sharpened, if asked), centre of mass at pixel (14, 14) as
    in MNIST."""
    rows, cols = np.nonzero(ink)
    if max(np.ptp(rows), np.ptp(cols)) >= MNIST_BOX:
        # to be reduced: its faint rim (an enlargement's or a blur's spread) is not its size
        rows, cols = np.nonzero(ink > 0.1 * ink.max())
    ink = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    scale = MNIST_BOX / max(ink.shape)
    height, width = (max(1, round(n * scale)) for n in ink.shape)
    digit = Image.fromarray(ink.astype(np.float32)).resize((width, height), Image.Resampling.BILINEAR)
    digit = np.clip(np.asarray(digit), 0, 1)
    if sharpen:
        digit = sharpened(digit)
    centre_y, centre_x = ndimage.center_of_mass(digit)
    top = int(np.clip(round(MNIST_SIZE / 2 - centre_y), 0, MNIST_SIZE - height))
    left = int(np.clip(round(MNIST_SIZE / 2 - centre_x), 0, MNIST_SIZE - width))
    canvas = np.zeros((MNIST_SIZE, MNIST_SIZE), np.float32)
    canvas[top:top + height, left:left + width] = digit
    return canvas


def sharpened(digit):
    """Unsharp masking at MNIST's scale: strokes spread by a blur or an enlargement get back
    some of the contrast of MNIST's own."""
    detail = digit - ndimage.gaussian_filter(digit, 1.0)
    return np.clip(digit + SHARPEN * detail, 0, 1)


def read_picture(path, split=None):
    """find_digits of one image file: its digits left to right (K, 28, 28), the main one's index.
    A file that cannot be read or holds no digit raises ValueError naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except IsADirectoryError:
        raise ValueError(f"{path}: is a folder, not an image: pass the image files in it "
                         f"(e.g. {path / '*.png'})") from None
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({error.strerror})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"{path}: over {MAX_FILE_BYTES // 1_000_000} MB, too large for a picture")
    try:
        return find_digits(decode_picture(data), split)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
