"""The renderings of benchmarks/pictures.py: an MNIST digit written as the files people have.

Each rendering takes a uint8 MNIST digit (light on dark, 28x28), its index (a seed for what is
random in it) and, for files of several digits, the digits after it; it returns (image, format,
save options). RENDERINGS names them with their kind; render_files writes a rendering's files.
"""

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

# --- Renderings: a uint8 MNIST digit (light on dark, 28x28) and its index -> (image, format,
# save options). Ink is float in [0, 1], 1 = full ink. -----------------------------------------

def enlarged(digit, size, resample=Image.Resampling.BICUBIC):
    return np.asarray(Image.fromarray(digit).resize((size, size), resample), np.float32) / 255


def grey_image(pixels):
    return Image.fromarray(np.round(255 * np.clip(pixels, 0, 1)).astype(np.uint8))


def on_paper(ink, shape, top, left):
    canvas = np.zeros(shape, np.float32)
    canvas[top:top + ink.shape[0], left:left + ink.shape[1]] = ink
    return canvas


def disk(radius):
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return xx ** 2 + yy ** 2 <= radius ** 2


def as_mnist(digit, index):
    return Image.fromarray(digit), "PNG", {}


def dark_on_white(digit, index):
    return Image.fromarray(255 - digit), "PNG", {}


def scan_280(digit, index):
    return grey_image(1 - enlarged(digit, 280)), "PNG", {}


def small_on_page(digit, index):
    """The digit at 56 px somewhere on a 420x600 white page."""
    top, left = np.random.default_rng(index).integers(0, [600 - 56, 420 - 56])
    return grey_image(1 - on_paper(enlarged(digit, 56), (600, 420), top, left)), "PNG", {}


def jpeg_q30(digit, index):
    return grey_image(1 - enlarged(digit, 84)), "JPEG", {"quality": 30}


def coloured_ink(digit, index):
    """Dark-blue ink on yellowish paper, 112 px."""
    ink = enlarged(digit, 112)[..., np.newaxis]
    pixels = np.array([250, 240, 190]) * (1 - ink) + np.array([20, 30, 120]) * ink
    return Image.fromarray(np.round(pixels).astype(np.uint8)), "PNG", {}


def transparent(digit, index):
    """Black ink on a transparent background, 112 px, as drawing programs save it."""
    pixels = np.zeros((112, 112, 4), np.uint8)
    pixels[..., 3] = np.round(255 * enlarged(digit, 112))
    return Image.fromarray(pixels), "PNG", {}


def blurred(sigma):
    def render(digit, index):
        return grey_image(1 - ndimage.gaussian_filter(enlarged(digit, 56), sigma)), "PNG", {}
    return render


def low_resolution(size, shown):
    """The digit reduced to size x size, then enlarged smoothly to shown x shown."""
    def render(digit, index):
        small = Image.fromarray(digit).resize((size, size), Image.Resampling.BOX)
        return grey_image(1 - enlarged(np.asarray(small), shown)), "PNG", {}
    return render


def thick_marker(digit, index):
    """At 112 px, the ink grown by a disk of radius 4 (a marker about 2 MNIST pixels wider)."""
    return grey_image(1 - ndimage.grey_dilation(enlarged(digit, 112), footprint=disk(4))), "PNG", {}


def thin_pen(digit, index):
    """At 112 px, the ink shrunk by a disk of radius 3 (strokes about 1 MNIST pixel wide)."""
    return grey_image(1 - ndimage.grey_erosion(enlarged(digit, 112), footprint=disk(3))), "PNG", {}


def uneven_light_noise(digit, index):
    """A photo: light falling off across a 240x240 page, noise, JPEG q70 (as tests/test_photos)."""
    ink = on_paper(enlarged(digit, 200), (240, 240), 20, 20)
    yy, xx = np.mgrid[0:240, 0:240] / 240
    paper = 0.3 + 0.6 * (0.7 * xx + 0.3 * yy) + 0.1 * np.exp(-((xx - 0.8) ** 2 + (yy - 0.2) ** 2) * 8)
    noise = np.random.default_rng(index).normal(0, 0.05, ink.shape)
    return grey_image(paper * (1 - 0.85 * ink) + noise), "JPEG", {"quality": 70}


def ruled_paper(digit, index):
    """The digit written across light-blue ruled lines that cross the whole 240x240 page."""
    image = Image.new("RGB", (240, 240), "white")
    for y in range(16, 240, 40):
        ImageDraw.Draw(image).line([(0, y), (239, y)], fill=(140, 170, 220), width=3)
    ink = on_paper(enlarged(digit, 192), (240, 240), 24, 24)[..., np.newaxis]
    pixels = np.asarray(image) * (1 - ink) + np.array([20, 20, 40]) * ink
    return Image.fromarray(np.round(pixels).astype(np.uint8)), "PNG", {}


def framed(digit, index):
    """A thin black frame around the 240x240 page."""
    image = grey_image(1 - on_paper(enlarged(digit, 192), (240, 240), 24, 24))
    ImageDraw.Draw(image).rectangle([0, 0, 239, 239], outline=0, width=2)
    return image, "PNG", {}


def exif_rotated(digit, index):
    """A phone's JPEG: pixels stored sideways, EXIF orientation 6 turns them upright."""
    image = grey_image(1 - on_paper(enlarged(digit, 224), (320, 240), 48, 8))
    exif = Image.Exif()
    exif[0x0112] = 6
    return image.transpose(Image.Transpose.ROTATE_90), "JPEG", {"exif": exif, "quality": 90}


def two_digits(digit, index, right):
    """Test digits i and i+1 side by side on a 240x480 page."""
    ink = on_paper(enlarged(digit, 192), (240, 480), 24, 24)
    ink += on_paper(enlarged(right, 192), (240, 480), 24, 264)
    return grey_image(1 - np.clip(ink, 0, 1)), "PNG", {}


# --- A page photographed on a table, and touching digits (issue 33) -----------------------------

PHOTO_SIZE = (800, 600)  # a phone's photo, reduced (the timing of a 1200 px one: large_page_ms)
SHADING = 4  # the table's texture and the light are drawn at 1/4 of that, then enlarged


def smooth_field(values, size):
    """A field drawn at 1/SHADING of the photo's size, enlarged to it (bilinear)."""
    return np.asarray(Image.fromarray(values.astype(np.float32)).resize(
        size, Image.Resampling.BILINEAR))


def table_surface(rng, patterned, size):
    """A dark table (0.08-0.3, a little uneven), or a patterned one: wood grain, stripes of
    0.2-0.55 at a random slant."""
    width, height = (side // SHADING for side in size)
    yy, xx = np.mgrid[0:height, 0:width] * PHOTO_SIZE[0] / size[0]  # the same grain at any size
    if not patterned:
        level = rng.uniform(0.08, 0.3)
        return smooth_field(level * (1 + 0.15 * np.sin(xx / rng.uniform(40, 100) + rng.uniform(0, 6))),
                            size)
    angle = rng.uniform(0, np.pi)
    along = xx * np.cos(angle) + yy * np.sin(angle)
    across = -xx * np.sin(angle) + yy * np.cos(angle)
    grain = np.sin(across / rng.uniform(1.5, 3.5) + 2 * np.sin(along / rng.uniform(20, 50)))
    return smooth_field(rng.uniform(0.3, 0.45) + 0.1 * grain, size)


def falling_light(rng, size):
    """Light falling off from a random spot, to 0.55-0.8 of its strength at the far corners."""
    width, height = (side // SHADING for side in size)
    yy, xx = np.mgrid[0:height, 0:width] / width
    spot_y, spot_x = rng.uniform(0.2, 0.55) * height / width, rng.uniform(0.3, 1.0)
    distance = (xx - spot_x) ** 2 + (yy - spot_y) ** 2
    return smooth_field(1 - rng.uniform(0.2, 0.45) * distance / distance.max(), size)


NOISE = {}  # per photo size, one field of camera noise, 2% of full light, cut at a random place


def camera_noise(rng, size):
    width, height = size
    if size not in NOISE:
        NOISE[size] = np.random.default_rng(0).normal(0, 0.02, (2 * height, 2 * width)).astype(np.float32)
    top, left = rng.integers(0, height), rng.integers(0, width)
    return NOISE[size][top:top + height, left:left + width]


def page_on_table(digit, index, patterned, size=PHOTO_SIZE, slant=0.0):
    """The digit written on a sheet of paper (0.85-0.95 light, 3:4), the sheet 55-80% of the
    photo's height, lying on a table (table_surface), turned by 0-15 degrees either way; light
    falling off (falling_light); noise; JPEG q85. With slant, the photo taken from a little to
    the side: each of the sheet's corners moved by up to slant of its height each way (a
    perspective, its sides no longer parallel)."""
    rng = np.random.default_rng(index)
    width, height = size
    page_height = int(rng.uniform(0.55, 0.8) * height)
    page_width = int(0.75 * page_height)
    digit_size = int(rng.uniform(0.35, 0.5) * page_height)
    top, left = rng.integers(page_height // 10, [page_height - digit_size - page_height // 10,
                                                  page_width - digit_size - page_width // 10])
    ink = on_paper(enlarged(digit, digit_size), (page_height, page_width), top, left)
    page = grey_image(rng.uniform(0.85, 0.95) * (1 - 0.88 * ink))
    angle = np.radians(rng.uniform(-15, 15))
    centre = np.array([width, height]) / 2 + rng.uniform(-0.08, 0.08, 2) * [width, height]
    # photo (x, y) -> page (x, y): turned by angle about the page's centre, put at `centre`
    cos, sin = np.cos(angle), np.sin(angle)
    affine = (cos, sin, page_width / 2 - cos * centre[0] - sin * centre[1],
              -sin, cos, page_height / 2 + sin * centre[0] - cos * centre[1])
    how = (Image.Transform.AFFINE, affine)
    if slant:
        corners = np.array([[0, 0], [page_width, 0], [page_width, page_height], [0, page_height]])
        turned = (corners - [page_width / 2, page_height / 2]) @ np.array([[cos, sin], [-sin, cos]])
        moved = turned + centre + rng.uniform(-slant, slant, (4, 2)) * page_height
        how = (Image.Transform.PERSPECTIVE, perspective(moved, corners))
    on_photo, mask = (np.asarray(layer.transform(size, *how, Image.Resampling.BILINEAR,
                                                 fillcolor=0), np.float32) / 255
                      for layer in (page, Image.new("L", page.size, 255)))
    # (the sheet's edge softened by the bilinear sampling, as a lens does)
    scene = on_photo + (1 - mask) * table_surface(rng, patterned, size)
    return (grey_image(scene * falling_light(rng, size) + camera_noise(rng, size)), "JPEG",
            {"quality": 85})


def perspective(points, to):
    """Pillow's PERSPECTIVE coefficients of the map taking each of the four points (x, y) to
    the point of `to` at its place."""
    rows, values = [], []
    for (x, y), (u, v) in zip(points, to):
        rows += [[x, y, 1, 0, 0, 0, -x * u, -y * u], [0, 0, 0, x, y, 1, -x * v, -y * v]]
        values += [u, v]
    return tuple(np.linalg.solve(np.array(rows, float), np.array(values, float)))


def dark_table(digit, index):
    """A page on a dark table (see page_on_table)."""
    return page_on_table(digit, index, patterned=False)


def wooden_table(digit, index):
    """A page on a patterned table, wood grain (see page_on_table)."""
    return page_on_table(digit, index, patterned=True)


def slanted_page(digit, index):
    """A page on a dark table photographed a little from the side: its corners moved by up to
    5% of its height (see page_on_table)."""
    return page_on_table(digit, index, patterned=False, slant=0.05)


def ink_box(digit):
    """The digit (uint8 28x28) cropped to its columns of ink, as float ink 0-1, full height."""
    cols = np.flatnonzero(digit.max(axis=0))
    return digit[:, cols.min():cols.max() + 1].astype(np.float32) / 255


def touching(digits, index, stroke):
    """Test digits side by side at MNIST's scale, each box overlapping the one before by 1-4 px
    (at most half the narrower box: a 1 stays between its neighbours; their ink added, up to
    full ink), or, with stroke, 2-4 px apart and joined by a stroke 2
    px wide from the left digit's lowest ink in its right third to the right digit's leftmost
    ink; then shown at 112 px tall, dark on white, with a 24 px margin."""
    rng = np.random.default_rng(index)
    boxes = [ink_box(digit) for digit in digits]
    widths = np.array([box.shape[1] for box in boxes])
    if stroke:
        steps = rng.integers(2, 5, len(boxes) - 1)
    else:
        steps = -np.minimum(rng.integers(1, 5, len(boxes) - 1), np.minimum(widths[:-1], widths[1:]) // 2)
    lefts = np.concatenate([[0], np.cumsum(widths[:-1] + steps)])
    strip = np.zeros((28, (lefts + widths).max()), np.float32)
    for box, left in zip(boxes, lefts):
        strip[:, left:left + box.shape[1]] += box
    strip = np.clip(strip, 0, 1)
    scale = 4
    shown = np.asarray(Image.fromarray(strip).resize((scale * strip.shape[1], 112),
                                                     Image.Resampling.BICUBIC))
    if stroke:
        joins = Image.new("F", (shown.shape[1], shown.shape[0]), 0)
        for left_box, left, right_box, right in zip(boxes, lefts, boxes[1:], lefts[1:]):
            third = left_box[:, 2 * left_box.shape[1] // 3:]
            rows, cols = np.nonzero(third >= min(0.5, third.max()))  # a faint digit: its strongest
            start = (left + 2 * left_box.shape[1] // 3 + cols[rows.argmax()], rows.max())
            rows, cols = np.nonzero(right_box >= min(0.5, right_box.max()))
            end = (right + cols.min(), rows[cols == cols.min()].mean())
            ImageDraw.Draw(joins).line([tuple(scale * (np.array(start) + 0.5)),
                                        tuple(scale * (np.array(end) + 0.5))],
                                       fill=1.0, width=2 * scale)
        shown = np.maximum(shown, ndimage.gaussian_filter(np.asarray(joins), 1.0))
    page = np.pad(np.clip(shown, 0, 1), 24)
    return grey_image(1 - page), "PNG", {}


def overlapping(digit, index, *others):
    """Test digits i, i+1 (and i+2) touching, their boxes overlapping by 1-4 px."""
    return touching([digit, *others], index, stroke=False)


def joined(digit, index, *others):
    """Test digits i, i+1 (and i+2) joined by a stroke."""
    return touching([digit, *others], index, stroke=True)


RENDERINGS = {  # name: (kind, render); kind: clean, hard (soft, coarse, thick or thin), photo
    "28 px as MNIST": ("clean", as_mnist),
    "28 px dark on white": ("clean", dark_on_white),
    "280 px dark on white": ("clean", scan_280),
    "56 px on a 420x600 page": ("clean", small_on_page),
    "84 px JPEG q30": ("clean", jpeg_q30),
    "112 px coloured ink": ("clean", coloured_ink),
    "112 px transparent PNG": ("clean", transparent),
    "56 px blurred 1 px": ("hard", blurred(1)),
    "56 px blurred 2 px": ("hard", blurred(2)),
    "8x8 shown at 64 px": ("hard", low_resolution(8, 64)),
    "10x10 shown at 60 px": ("hard", low_resolution(10, 60)),
    "14x14 shown at 56 px": ("hard", low_resolution(14, 56)),
    "112 px thick marker": ("hard", thick_marker),
    "112 px thin pen": ("hard", thin_pen),
    "uneven light, noise, JPEG": ("photo", uneven_light_noise),
    "ruled paper": ("photo", ruled_paper),
    "a frame": ("photo", framed),
    "EXIF rotation": ("photo", exif_rotated),
    "two digits side by side": ("photo", two_digits),
    "page on a dark table, tilted 0-15°": ("page", dark_table),
    "page on a wooden table, tilted 0-15°": ("page", wooden_table),
    "page on a dark table, at a slant": ("page", slanted_page),
    "two digits touching, boxes overlapping": ("touching", overlapping),
    "two digits joined by a stroke": ("touching", joined),
    "three digits touching, boxes overlapping": ("touching", overlapping),
    "three digits joined by a stroke": ("touching", joined),
}
DIGITS_PER_FILE = {name: 3 if name.startswith("three") else 2 for name in RENDERINGS
                   if name.startswith(("two", "three"))}  # the others: 1


def render_files(name, x, folder):
    """Write the rendering of every digit in x into folder: the file names, in order."""
    render = RENDERINGS[name][1]
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    count = DIGITS_PER_FILE.get(name, 1)
    for index, digit in enumerate(x):
        others = [x[(index + k) % len(x)] for k in range(1, count)]  # digits i+1, i+2
        image, fmt, options = render(digit, index, *others)
        names.append(f"{index:05d}.{'jpg' if fmt == 'JPEG' else 'png'}")
        image.save(folder / names[-1], fmt, **options)
    return names
