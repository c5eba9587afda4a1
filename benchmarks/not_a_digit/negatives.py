"""Pictures that hold no digit, in separate KINDS, to train and to measure a "not a digit" answer.

Every picture is made as a person would produce it: ink drawn or typed, then put on paper of a
random size (60-300 px on its long side, words wider), mostly dark ink on light paper, some light
on dark, some coloured, some JPEG. `negative_pictures(kind, count, seed)` returns the encoded
files' bytes; `negative_marks(kind, count, seed)` reads them as the product does
(pictures.decode_picture, then pictures.find_digits) and returns each mark it finds in MNIST's
form. A picture of several marks (a word: find_digits splits it into letters, or into pairs of
letters where they touch) counts each mark as one negative, since the product answers per mark.

KINDS (make them differ: train a decider on some and measure it on the others):
    font_letters    letters and symbols typed in the TTF fonts matplotlib ships (DejaVu, STIX,
                    Computer Modern): many sizes, weights (ink grown or thinned), slants, turns
    stroke_letters  capital and small letters drawn as pen strokes: skeletons with a smooth
                    random warp, jitter, and a varying stroke width
    doodles         smiley, house, star, heart, spiral, arrow, circle with a cross, sun, flower,
                    fir tree, fish, stick figure, lightning, envelope, grid, cat, car, eye, ...
    scribbles       random curvy strokes, zig-zags, hatching and cross-hatching, coils, tangles
    digit_overlaps  two MNIST digits (different labels, neither a 1) drawn on top of each other,
                    shifted by at most a quarter of their size (side by side they are digits)
    digit_pieces    an MNIST digit (not a 1) cut by a random straight line, 35-65% of its ink
                    kept (noisy as negatives: a piece of a digit may look like another digit)
    words           2-6 small or capital letters drawn as strokes (the stroke_letters alphabet),
                    side by side, sometimes touching
    kana_kanji      Japanese kana and kanji drawn as pen strokes: the strokes of the Hershey
                    fonts' Japanese (1967; pip install Hershey-Fonts) through the stroke letters'
                    hand and pen; 104 of its 192 glyphs, those like a digit or a straight
                    stroke left out (KANA_KANJI_LEFT_OUT), and the blank boxes
    hershey_symbols 28 symbols of the Hershey fonts (astrology, weather, maps, music, maths)
                    drawn the same way; those like a digit (or a letter that is) and the
                    doodles' shapes left out (HERSHEY_SYMBOLS)
    world_scripts   336 letters of ten other scripts (Devanagari, Bengali, Tamil, Thai, Khmer,
                    Georgian, Armenian, Ethiopic, Hebrew, Arabic) typed in the Noto fonts
                    (apt-get install fonts-noto-core), as font_letters are; the scripts' digits
                    and the letters like a digit (or like a letter that is) left out by eye
                    (WORLD_SCRIPTS)
    world_strokes   those letters drawn as pen strokes: the typed letter's skeleton
                    (scikit-image) through the stroke letters' hand and pen; without Armenian
                    and the letters like a Latin letter (WORLD_STROKES_LEFT_OUT): drawn, they
                    would be the stroke letters measured here
    pictograms      78 pictograms of the Noto symbol fonts (phones, hands, chess pieces, a camera,
                    books, ...) drawn as their outlines by the same hand; the doodles' objects
                    and their families left out (PICTOGRAMS)

Letters that look like digits are left out everywhere (DIGIT_LIKE): O o Q D I i l j J S s Z z
B b G g q a d T t, and symbols such as ! | / ( ) ? $ § that read as 1, 2, 5 or 7 once their dot
or bar is dropped, or the Cyrillic and Greek letters that are digits' twins (З Ч б ε δ θ ...).

Only NumPy, SciPy, Pillow and matplotlib's font files (found without importing pyplot),
Hershey-Fonts for kana_kanji and hershey_symbols, the Noto fonts for world_scripts, world_strokes
and pictograms, scikit-image for the last two; no TensorFlow. Same kind, count and seed: the
same pictures.
"""

import functools
import io
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

KINDS = ("font_letters", "stroke_letters", "doodles", "scribbles", "digit_overlaps",
         "digit_pieces", "words", "kana_kanji", "hershey_symbols", "world_scripts",
         "world_strokes", "pictograms")
HELD_OUT = ("stroke_letters", "doodles", "words")  # never trained or tuned on: what is measured
NEEDS_MNIST = ("digit_overlaps", "digit_pieces")  # these take MNIST digits (uint8, N x 28 x 28)

DIGIT_LIKE = set("OoQDIilLjJSsZzBbGgqadTt") - set("L")  # L stays: no digit looks like it
CANVAS = 256  # drawings are made on a box of this size (twice that, then halved: smooth edges)

# --- Typed letters and symbols ------------------------------------------------------------------

LATIN = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in DIGIT_LIKE]
SYMBOLS = list("#%&*+=@~<>^") + list("×÷≠≈±∞√∑∏∫∂∇∀∈∉∩∪⊂⊕⊗△□◇○★☆♠♣♥♦☺☹♪♫→←↑↓↔⇒✓✗✕€£¥©®¶")
GREEK = list("ΓΔΘΛΞΠΣΦΨΩαγεζηκλμνξπρστυφχψω")
CYRILLIC = list("ДЖИЙКЛПФХЦШЩЫЮЯджийклмнпфхцшщыюя")
# Symbols and letters taken out of the lists above as digits' twins (shown for the record).
TWINS = set("εδθζσςτυ∫○∂√") | set("¶") | set("ч")
TYPED = [c for c in LATIN + SYMBOLS + GREEK + CYRILLIC if c not in TWINS]
FONT_FILES = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
              "DejaVuSans-BoldOblique.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
              "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
              "DejaVuSerif-BoldItalic.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf",
              "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf", "cmr10.ttf", "cmss10.ttf",
              "cmti10.ttf", "cmtt10.ttf", "cmb10.ttf"]


def font_folder():
    """matplotlib's own TTF folder (mpl-data/fonts/ttf), without importing pyplot."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def font_with(character, rng, fonts=None):
    """A random font (PIL FreeTypeFont at 160 px) among `fonts` ([(font, its characters)];
    default: matplotlib's, FONT_FILES) that have the character."""
    usable = [font for font, characters in (fonts or matplotlib_fonts())
              if ord(character) in characters]
    return usable[rng.integers(len(usable))]


@functools.cache
def matplotlib_fonts():
    return [font_and_characters(font_folder() / name) for name in FONT_FILES
            if (font_folder() / name).exists()]


def font_and_characters(path):
    """(the font at 160 px, the set of its characters' code points)."""
    from fontTools.ttLib import TTFont

    return ImageFont.truetype(str(path), 160), set(TTFont(str(path), lazy=True).getBestCmap())


def typed(rng, character=None):
    """Ink (float, 1 = ink) of one typed letter or symbol: random font, slant, turn and weight."""
    character = character or TYPED[rng.integers(len(TYPED))]
    return typed_ink(character, font_with(character, rng), rng), character


def typed_ink(character, font, rng):
    """The character in the font, slanted, turned, and bolder or lighter at random."""
    image = Image.new("L", (352, 352), 0)
    ImageDraw.Draw(image).text((176, 176), character, fill=255, font=font, anchor="mm")
    shear, turn = rng.uniform(-0.3, 0.3), rng.uniform(-15, 15)
    image = image.transform(image.size, Image.Transform.AFFINE,
                            (1, shear, -shear * 176, 0, 1, 0), Image.Resampling.BICUBIC)
    image = image.rotate(turn, Image.Resampling.BICUBIC)
    ink = np.asarray(image, np.float32) / 255
    return reweighted(cropped(ink), rng)


def reweighted(ink, rng):
    """Bolder or lighter: half the time the ink is grown (up to 6% of its height) or thinned
    (up to 2.5%), by a grey dilation or erosion with a disk; thinning that would erase it is
    skipped."""
    radius = round(rng.uniform(-0.025, 0.06) * ink.shape[0]) if rng.random() < 0.5 else 0
    if radius > 0:
        return cropped(ndimage.grey_dilation(np.pad(ink, radius), footprint=disk(radius)))
    if radius < 0:
        thinned = ndimage.grey_erosion(ink, footprint=disk(-radius))
        if thinned.max() >= 0.5:
            return cropped(thinned)
    return ink


def disk(radius):
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return xx ** 2 + yy ** 2 <= radius ** 2


def cropped(ink):
    rows, cols = np.nonzero(ink > 0.02)
    if rows.size == 0:
        return ink
    return ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


# --- Pen strokes --------------------------------------------------------------------------------

def arc(cx, cy, rx, ry, start, stop, n=24):
    """Points along an ellipse's arc, angles in degrees (y down: -90 is the top, 90 the bottom)."""
    angles = np.radians(np.linspace(start, stop, n))
    return list(zip(cx + rx * np.cos(angles), cy + ry * np.sin(angles)))


BOWL = [(0, 0)] + arc(0.3, 0.25, 0.45, 0.25, -90, 90) + [(0, 0.5)]
ARCH = [(0, 0.7)] + arc(0.4, 0.7, 0.4, 0.3, 180, 360) + [(0.8, 1)]
LETTER_STROKES = {  # strokes in a box 0..1 high (x to the right, y down), as a person draws them
    "A": [[(0, 1), (0.5, 0), (1, 1)], [(0.25, 0.62), (0.75, 0.62)]],
    "C": [arc(0.5, 0.5, 0.5, 0.5, -40, -320)],
    "E": [[(0.8, 0), (0, 0), (0, 1), (0.8, 1)], [(0, 0.5), (0.6, 0.5)]],
    "F": [[(0.8, 0), (0, 0), (0, 1)], [(0, 0.5), (0.6, 0.5)]],
    "H": [[(0, 0), (0, 1)], [(0.8, 0), (0.8, 1)], [(0, 0.5), (0.8, 0.5)]],
    "K": [[(0, 0), (0, 1)], [(0.8, 0), (0, 0.6)], [(0.25, 0.42), (0.85, 1)]],
    "L": [[(0, 0), (0, 1), (0.7, 1)]],
    "M": [[(0, 1), (0.05, 0), (0.5, 0.65), (0.95, 0), (1, 1)]],
    "N": [[(0, 1), (0, 0), (0.8, 1), (0.8, 0)]],
    "P": [[(0, 1), (0, 0)], BOWL],
    "R": [[(0, 1), (0, 0)], BOWL, [(0.25, 0.5), (0.8, 1)]],
    "U": [[(0, 0), (0, 0.6)] + arc(0.4, 0.6, 0.4, 0.4, 180, 0) + [(0.8, 0.6), (0.8, 0)]],
    "V": [[(0, 0), (0.45, 1), (0.9, 0)]],
    "W": [[(0, 0), (0.25, 1), (0.5, 0.35), (0.75, 1), (1, 0)]],
    "X": [[(0, 0), (0.8, 1)], [(0.8, 0), (0, 1)]],
    "Y": [[(0, 0), (0.45, 0.5)], [(0.9, 0), (0.45, 0.5), (0.45, 1)]],
    "e": [[(0.05, 0.65), (0.9, 0.65)] + arc(0.47, 0.65, 0.43, 0.35, 0, -320)],
    "f": [arc(0.55, 0.2, 0.3, 0.2, -20, -180) + [(0.25, 1)], [(0, 0.45), (0.6, 0.45)]],
    "h": [[(0, 0), (0, 1)], [(0, 0.75)] + arc(0.4, 0.75, 0.4, 0.3, 180, 360) + [(0.8, 1)]],
    "k": [[(0, 0), (0, 1)], [(0.7, 0.45), (0, 0.8)], [(0.25, 0.7), (0.75, 1)]],
    "m": [[(0, 0.4), (0, 1)], [(0, 0.7)] + arc(0.3, 0.7, 0.3, 0.3, 180, 360) + [(0.6, 1)],
          [(0.6, 0.7)] + arc(0.9, 0.7, 0.3, 0.3, 180, 360) + [(1.2, 1)]],
    "n": [[(0, 0.4), (0, 1)], ARCH],
    "r": [[(0, 0.4), (0, 1)], [(0, 0.75)] + arc(0.35, 0.75, 0.35, 0.3, 180, 300)],
    "v": [[(0, 0.4), (0.35, 1), (0.7, 0.4)]],
    "w": [[(0, 0.4), (0.2, 1), (0.4, 0.6), (0.6, 1), (0.8, 0.4)]],
    "x": [[(0, 0.4), (0.6, 1)], [(0.6, 0.4), (0, 1)]],
    "y": [[(0, 0.3), (0.4, 0.8)], [(0.8, 0.3), (0.15, 1.3)]],
}
STROKE_LETTERS = sorted(LETTER_STROKES)


def resampled(points, step=0.02):
    """A polyline with points about `step` apart (so that a warp bends its straight parts)."""
    points = np.asarray(points, float)
    if len(points) < 2:
        return points
    out = [points[:1]]
    for a, b in zip(points[:-1], points[1:]):
        n = max(1, int(np.linalg.norm(b - a) / step))
        out.append(a + (b - a) * (np.arange(1, n + 1) / n)[:, np.newaxis])
    return np.concatenate(out)


def hand(strokes, rng, wobble=0.03):
    """Strokes as a hand draws them: turned, slanted, stretched, bent by a smooth random warp,
    each point jittered a little."""
    strokes = [resampled(s) for s in strokes]
    points = np.concatenate(strokes)
    centre = (points.min(0) + points.max(0)) / 2
    size = max(np.ptp(points, 0).max(), 1e-6)
    turn, shear = np.radians(rng.uniform(-15, 15)), rng.uniform(-0.3, 0.3)
    stretch = np.exp(rng.uniform(-0.2, 0.2, 2))
    matrix = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]]) \
        @ np.array([[1, shear], [0, 1]]) @ np.diag(stretch)
    waves = [(rng.uniform(1, 3, 2), rng.uniform(0, 2 * np.pi, 2), rng.normal(0, wobble, 2))
             for _ in range(3)]

    def warp(p):
        p = (p - centre) / size
        for freq, phase, amp in waves:
            p = p + amp * np.sin(freq * np.pi * p[:, ::-1] + phase)
        return p @ matrix.T + rng.normal(0, wobble / 6, p.shape)

    return [warp(s) for s in strokes]


def draw(strokes, rng, width=None, taper=True, box=CANVAS):
    """Ink of strokes (lists of (x, y) points in any units), the drawing's longer side `box`
    pixels: each stroke drawn as segments with a smoothly varying width (`width`: a fraction of
    the drawing's longer side, 4-14% if not given), round ends. A stroke of one point is a dot."""
    points = np.concatenate([np.asarray(s, float).reshape(-1, 2) for s in strokes])
    low, span = points.min(0), max(np.ptp(points, 0).max(), 1e-6)
    width = width if width is not None else rng.uniform(0.04, 0.14)
    margin = 0.1 * 2 * box
    scale = 2 * box * (1 - 2 * 0.1) / span  # drawn twice as large, then halved
    shape = np.ceil(np.ptp(points, 0) * scale + 2 * margin).astype(int) + 1
    image = Image.new("L", (int(shape[0]), int(shape[1])), 0)
    pen = ImageDraw.Draw(image)
    base = width * 2 * box * (1 - 2 * 0.1)
    for stroke in strokes:
        s = (np.asarray(stroke, float).reshape(-1, 2) - low) * scale + margin
        n = len(s)
        change = np.cumsum(rng.normal(0, 0.08, n)) if taper else np.zeros(n)
        widths = base * np.clip(1 + change - change.mean(), 0.5, 1.6)
        for i in range(n):
            r = widths[i] / 2
            pen.ellipse([s[i, 0] - r, s[i, 1] - r, s[i, 0] + r, s[i, 1] + r], fill=255)
            if i + 1 < n:
                pen.line([tuple(s[i]), tuple(s[i + 1])], fill=255,
                         width=max(1, round((widths[i] + widths[i + 1]) / 2)))
    image = image.reduce(2)
    return cropped(np.asarray(image, np.float32) / 255)


def stroke_letter(rng, letter=None):
    letter = letter or STROKE_LETTERS[rng.integers(len(STROKE_LETTERS))]
    return draw(hand(LETTER_STROKES[letter], rng), rng), letter


# --- Doodles ------------------------------------------------------------------------------------

def circle(cx, cy, r, n=40, ry=None):
    return arc(cx, cy, r, r if ry is None else ry, 0, 360, n)


def dot(x, y):
    return [(x, y)]


def smiley(rng):
    mouth = arc(0.5, 0.5, 0.28, rng.uniform(0.12, 0.25), 20, 160)
    return [circle(0.5, 0.5, 0.5), dot(0.33, 0.35), dot(0.67, 0.35), mouth]


def house(rng):
    h = rng.uniform(0.4, 0.6)
    strokes = [[(0, 1 - h), (0, 1), (1, 1), (1, 1 - h)], [(-0.1, 1 - h), (0.5, 0.1), (1.1, 1 - h)]]
    if rng.random() < 0.6:
        strokes.append([(0.4, 1), (0.4, 1 - 0.5 * h), (0.6, 1 - 0.5 * h), (0.6, 1)])
    return strokes


def star(rng):
    angles = np.radians(-90 + 144 * np.arange(6))
    return [list(zip(0.5 + 0.5 * np.cos(angles), 0.5 + 0.5 * np.sin(angles)))]


def heart(rng):
    t = np.linspace(0, 2 * np.pi, 60)
    return [list(zip(16 * np.sin(t) ** 3, -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t)
                                           - np.cos(4 * t))))]


def spiral(rng):
    turns = rng.uniform(2.2, 4)
    t = np.linspace(0, turns * 2 * np.pi, int(60 * turns))
    return [list(zip(t * np.cos(t), t * np.sin(t)))]


def arrow(rng):
    head = rng.uniform(0.25, 0.4)
    strokes = [[(0, 0.5), (1, 0.5)], [(1 - head, 0.5 - head), (1, 0.5), (1 - head, 0.5 + head)]]
    if rng.random() < 0.3:  # a double arrow
        strokes.append([(head, 0.5 - head), (0, 0.5), (head, 0.5 + head)])
    turn = rng.choice([0, 45, 90, 135, 180, 225, 270, 315])
    return rotated(strokes, turn)


def rotated(strokes, degrees):
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return [[(0.5 + c * (x - 0.5) - s * (y - 0.5), 0.5 + s * (x - 0.5) + c * (y - 0.5))
             for x, y in stroke] for stroke in strokes]


def circle_cross(rng):
    if rng.random() < 0.5:  # a plus inside
        return [circle(0.5, 0.5, 0.5), [(0.5, 0), (0.5, 1)], [(0, 0.5), (1, 0.5)]]
    d = 0.5 / math.sqrt(2)
    return [circle(0.5, 0.5, 0.5), [(0.5 - d, 0.5 - d), (0.5 + d, 0.5 + d)],
            [(0.5 + d, 0.5 - d), (0.5 - d, 0.5 + d)]]


def sun(rng):
    rays = int(rng.integers(6, 11))
    strokes = [circle(0.5, 0.5, 0.25)]
    for a in np.linspace(0, 2 * np.pi, rays, endpoint=False):
        strokes.append([(0.5 + 0.34 * math.cos(a), 0.5 + 0.34 * math.sin(a)),
                        (0.5 + 0.5 * math.cos(a), 0.5 + 0.5 * math.sin(a))])
    return strokes


def flower(rng):
    petals = int(rng.integers(5, 9))
    strokes = [circle(0.5, 0.4, 0.1)]
    for a in np.linspace(0, 360, petals, endpoint=False):
        petal = arc(0.5 + 0.22, 0.4, 0.13, 0.08, 0, 360, 24)
        strokes += rotated_about([petal], a, (0.5, 0.4))
    strokes.append([(0.5, 0.52), (0.5, 1.2)])
    return strokes


def rotated_about(strokes, degrees, centre):
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    x0, y0 = centre
    return [[(x0 + c * (x - x0) - s * (y - y0), y0 + s * (x - x0) + c * (y - y0))
             for x, y in stroke] for stroke in strokes]


def fir_tree(rng):
    layers = int(rng.integers(2, 4))
    left, right = [], []
    for i in range(layers):
        top, bottom, half = 0.8 * i / layers, 0.8 * (i + 1) / layers + 0.05, 0.2 + 0.3 * (i + 1) / layers
        left += [(0.5 - 0.1 * half, top + 0.02), (0.5 - half, bottom)]
        right += [(0.5 + 0.1 * half, top + 0.02), (0.5 + half, bottom)]
    outline = [(0.5, 0)] + right + [(0.5, 0.85)][:0] + left[::-1] + [(0.5, 0)]
    return [outline, [(0.42, 0.85), (0.42, 1), (0.58, 1), (0.58, 0.85)],
            [(0.0, 0.85), (1.0, 0.85)]]


def fish(rng):
    body = arc(0.45, 0.5, 0.4, 0.25, 0, 360, 48)
    return [body, [(0.82, 0.5), (1.1, 0.25), (1.1, 0.75), (0.82, 0.5)], dot(0.2, 0.45)]


def stick_figure(rng):
    return [circle(0.5, 0.15, 0.15), [(0.5, 0.3), (0.5, 0.7)], [(0.15, 0.45), (0.85, 0.45)],
            [(0.25, 1), (0.5, 0.7), (0.75, 1)]]


def lightning(rng):
    return [[(0.6, 0), (0.25, 0.55), (0.55, 0.5), (0.35, 1), (0.8, 0.4), (0.5, 0.45), (0.75, 0),
             (0.6, 0)]]


def envelope(rng):
    return [[(0, 0.2), (1, 0.2), (1, 0.85), (0, 0.85), (0, 0.2)], [(0, 0.2), (0.5, 0.6), (1, 0.2)]]


def grid(rng):
    return [[(0.33, 0), (0.33, 1)], [(0.67, 0), (0.67, 1)], [(0, 0.33), (1, 0.33)],
            [(0, 0.67), (1, 0.67)]]


def cat(rng):
    face = circle(0.5, 0.55, 0.4)
    return [face, [(0.15, 0.35), (0.2, 0.0), (0.4, 0.17)], [(0.6, 0.17), (0.8, 0.0), (0.85, 0.35)],
            dot(0.37, 0.48), dot(0.63, 0.48), [(0.45, 0.62), (0.5, 0.67), (0.55, 0.62)],
            [(0.35, 0.65), (0.0, 0.6)], [(0.35, 0.7), (0.0, 0.75)], [(0.65, 0.65), (1.0, 0.6)],
            [(0.65, 0.7), (1.0, 0.75)]]


def car(rng):
    body = [(0, 0.75), (0, 0.5), (0.2, 0.45), (0.35, 0.2), (0.75, 0.2), (0.85, 0.45), (1.1, 0.5),
            (1.1, 0.75), (0, 0.75)]
    return [body, circle(0.25, 0.8, 0.1), circle(0.85, 0.8, 0.1)]


def eye(rng):
    return [arc(0.5, 1.0, 0.6, 0.6, -150, -30), arc(0.5, 0.4, 0.6, 0.6, 150, 30),
            circle(0.5, 0.7, 0.15), dot(0.5, 0.7)]


def checked_box(rng):
    return [[(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)], [(0.2, 0.5), (0.45, 0.8), (0.9, 0.15)]]


def warning_sign(rng):
    return [[(0.5, 0), (1, 0.9), (0, 0.9), (0.5, 0)], [(0.5, 0.3), (0.5, 0.6)], dot(0.5, 0.75)]


def crescent_moon(rng):
    return [arc(0.5, 0.5, 0.5, 0.5, -60, -300) + arc(0.75, 0.5, 0.4, 0.45, 120, 240)[::-1]]


def ladder(rng):
    rungs = int(rng.integers(3, 6))
    return [[(0, 0), (0, 1)], [(0.5, 0), (0.5, 1)]] + \
        [[(0, y), (0.5, y)] for y in np.linspace(0.15, 0.85, rungs)]


DOODLES = {f.__name__: f for f in (smiley, house, star, heart, spiral, arrow, circle_cross, sun,
                                   flower, fir_tree, fish, stick_figure, lightning, envelope, grid,
                                   cat, car, eye, checked_box, warning_sign, crescent_moon, ladder)}


def doodle(rng, name=None):
    name = name or list(DOODLES)[rng.integers(len(DOODLES))]
    return draw(hand(DOODLES[name](rng), rng, wobble=0.02), rng, width=rng.uniform(0.03, 0.09)), name


# --- Scribbles ----------------------------------------------------------------------------------

def curvy(rng):
    """A long random curve that turns and crosses itself (a walk whose heading drifts)."""
    n = int(rng.integers(150, 400))
    heading = np.cumsum(rng.normal(0, 0.25, n)) + rng.uniform(0, 2 * np.pi)
    points = np.cumsum(np.stack([np.cos(heading), np.sin(heading)], 1), 0)
    points -= points.mean(0)  # kept within a box: pulled back towards the middle
    limit = rng.uniform(8, 20)
    return [np.clip(points, -limit, limit) * (1 + 0.05 * rng.normal(size=points.shape))]


def zigzag(rng):
    teeth = int(rng.integers(4, 11))
    x = np.linspace(0, 1, 2 * teeth + 1)
    y = np.where(np.arange(x.size) % 2 == 0, 0, rng.uniform(0.2, 0.8))
    return rotated([list(zip(x, y))], rng.uniform(0, 360))


def hatching(rng):
    lines = int(rng.integers(4, 11))
    strokes = [[(0, y), (1, y + rng.uniform(-0.05, 0.05))] for y in np.linspace(0, 1, lines)]
    if rng.random() < 0.5:  # cross-hatching
        strokes += [[(x, 0), (x + rng.uniform(-0.05, 0.05), 1)] for x in np.linspace(0, 1, lines)]
    return rotated(strokes, rng.uniform(0, 180))


def coil(rng):
    """Loops along a line (a prolate cycloid), as a pen tried out or a cord."""
    loops = rng.uniform(3, 7)
    t = np.linspace(0, loops * 2 * np.pi, int(50 * loops))
    r = rng.uniform(1.5, 3)
    return rotated([list(zip((t - r * np.sin(t)) / 10, (r * np.cos(t)) / 10))], rng.uniform(-30, 30))


def tangle(rng):
    """Many short random strokes heaped together (ink scratched over a spot)."""
    return [rng.uniform(0, 1, (int(rng.integers(4, 9)), 2)) for _ in range(int(rng.integers(2, 5)))]


def wave(rng):
    periods = rng.uniform(3, 6)
    x = np.linspace(0, 1, 200)
    return rotated([list(zip(x, rng.uniform(0.05, 0.15) * np.sin(2 * np.pi * periods * x)))],
                   rng.uniform(-40, 40))


SCRIBBLES = {f.__name__: f for f in (curvy, zigzag, hatching, coil, tangle, wave)}


def scribble(rng, name=None):
    name = name or list(SCRIBBLES)[rng.integers(len(SCRIBBLES))]
    strokes = SCRIBBLES[name](rng)
    width = rng.uniform(0.015, 0.06)  # a scribble is large for its pen
    return draw(strokes, rng, width=width), name


# --- Two digits on top of each other; pieces of digits ------------------------------------------

def mnist_ink(digit, size=112):
    return np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC),
                      np.float32) / 255


def digit_overlap(rng, digits, labels):
    """Two MNIST digits of different labels (neither a 1: a 1 over a 7 or a 4 is still one of
    them) on top of each other, the second shifted by at most a quarter of their size."""
    usable = np.flatnonzero(labels != 1)
    while True:
        a, b = rng.choice(usable, 2, replace=False)
        if labels[a] != labels[b]:
            break
    canvas = np.zeros((112 + 56, 112 + 56), np.float32)
    dy, dx = rng.integers(-28, 29, 2)
    canvas[28:140, 28:140] = mnist_ink(digits[a])
    canvas[28 + dy:140 + dy, 28 + dx:140 + dx] = np.maximum(
        canvas[28 + dy:140 + dy, 28 + dx:140 + dx], mnist_ink(digits[b]))
    return cropped(canvas), f"{labels[a]}+{labels[b]}"


def digit_piece(rng, digits, labels):
    """An MNIST digit (not a 1) cut by a random straight line: the side keeping 35-65% of its ink."""
    usable = np.flatnonzero(labels != 1)
    while True:
        i = rng.choice(usable)
        ink = mnist_ink(digits[i])
        yy, xx = np.mgrid[0:112, 0:112] - 55.5
        angle = rng.uniform(0, 2 * np.pi)
        side = xx * math.cos(angle) + yy * math.sin(angle)
        cut = np.quantile(side[ink > 0.3], rng.uniform(0.35, 0.65))
        piece = np.where(side > cut, ink, 0)
        if piece.sum() > 0.3 * ink.sum():
            return cropped(piece), f"piece of {labels[i]}"


# --- Words --------------------------------------------------------------------------------------

def word(rng, length=None):
    """2-6 stroke letters side by side (all small or all capitals), each drawn by its own hand,
    gaps from slightly overlapping to a third of a letter."""
    length = length or int(rng.integers(2, 7))
    capitals = rng.random() < 0.4
    alphabet = [c for c in STROKE_LETTERS if c.isupper() == capitals]
    letters = "".join(alphabet[rng.integers(len(alphabet))] for _ in range(length))
    strokes, x = [], 0.0
    for letter in letters:
        drawn = hand(LETTER_STROKES[letter], rng, wobble=0.02)
        points = np.concatenate(drawn)
        # letters keep their place on the line: small letters' tops are at 0.4 of a capital
        top = 0 if letter.isupper() or letter in "fhk" else 0.4
        low, high = points.min(0), points.max(0)
        height = (1 - top) if letter != "y" else 1.0
        scale = height / max(high[1] - low[1], 1e-6)
        shift = np.array([x - low[0] * scale, top - low[1] * scale + rng.normal(0, 0.03)])
        strokes += [s * scale + shift for s in drawn]
        x += (high[0] - low[0]) * scale + rng.uniform(-0.03, 0.3)
    span = np.ptp(np.concatenate(strokes), 0).max()  # in capital letters' heights
    return draw(strokes, rng, width=rng.uniform(0.05, 0.13) / span,
                box=min(1100, round(CANVAS * span))), letters


# --- Japanese drawn as strokes -----------------------------------------------------------------

# Glyphs of the Hershey Japanese font (by their place in its glyph table) that look like a digit,
# a Latin letter that does (I, J, L, t, B), or are made of one or two straight strokes: 十 三 七
# 日 五; い う そ ち つ て と の よ ら り る ろ じ ぢ づ で ぞ; ア イ エ カ ク コ ス ソ ト ナ ヌ ハ ヒ
# フ マ ム ユ ヨ ラ リ ル レ ロ ワ ヱ ヲ ン, and their voiced forms; the table's blank boxes and
# every glyph of fewer than three strokes (一, 丨, ノ, く, ...).
KANA_KANJI_LEFT_OUT = {2, 16, 19, 21, 23, 33, 34, 46, 48, 49, 50, 51, 56, 68, 71, 72, 73, 74, 76,
                       79, 93, 96, 98, 99, 100, 112, 113, 115, 117, 119, 121, 124, 126, 131, 132,
                       134, 137, 138, 139, 142, 144, 148, 149, 150, 151, 152, 153, 154, 155, 156,
                       157, 160, 161, 162, 167, 169, 171, 173, 174, 176, 178, 179, 181, 182, 183,
                       184, 187, 188, 189}
# Symbols of the Hershey fonts, by font and the key each is stored under: astrology's signs,
# Neptune, a comet; weather and map symbols (an octagon, a bell, a tower, a boat); a sharp;
# Π Σ ≠ ℵ ÷. Left out: those like a digit, or like a letter that is (♋ 69, ♊ II, ♉, ∞, ≤ ≥
# drawn as Z, a circle on a stem as 6 or 9: ♀ ☿ ♂ ♅, a diamond as 0, a rest like ζ, a flag like
# P, an anchor or ± like ⊥ or t), and the shapes of the doodles (stars, hearts, arrows, a
# crescent, circles, triangles, squares, trees, the sun).
HERSHEY_SYMBOLS = {"astrology": "!/<>?@`{}~", "meteorology": '"&', "music": "'",
                   "symbolic": "AFWZ[]^aeg", "mathlow": ":;?wx"}


@functools.cache
def hershey_glyphs(font_name):
    """[(key, strokes in a box 0..1 high, y down)] of a Hershey font (pip install
    Hershey-Fonts), in its table's order, without the space; strokes [] for a glyph of none."""
    try:
        from HersheyFonts import HersheyFonts
    except ImportError:
        raise SystemExit("kana_kanji and hershey_symbols need the Hershey fonts: "
                         "pip install Hershey-Fonts")
    font = HersheyFonts()
    font.load_default_font(font_name)
    glyphs = []
    for key, glyph in font.all_glyphs.items():
        if key == " ":
            continue
        strokes = [np.asarray(s, float) for s in glyph.strokes if len(s) > 1]
        if strokes:
            points = np.concatenate(strokes)
            low, height = points.min(0), max(np.ptp(points[:, 1]), 1e-6)
            strokes = [(s - low) / height for s in strokes]
        glyphs.append((key, strokes))
    return glyphs


def kana_kanji_strokes():
    """{place in the glyph table: strokes} of the Japanese glyphs kept."""
    return {place: strokes for place, (_, strokes) in enumerate(hershey_glyphs("japanese"))
            if place not in KANA_KANJI_LEFT_OUT and len(strokes) >= 3}


def kana_kanji(rng, place=None):
    glyphs = kana_kanji_strokes()
    place = place if place is not None else sorted(glyphs)[rng.integers(len(glyphs))]
    return draw(hand(glyphs[place], rng), rng), f"kana_kanji {place}"


def hershey_symbol(rng, name=None):
    glyphs = {f"{font} {key}": strokes for font, keys in HERSHEY_SYMBOLS.items()
              for key, strokes in hershey_glyphs(font) if key in keys}
    name = name or sorted(glyphs)[rng.integers(len(glyphs))]
    return draw(hand(glyphs[name], rng), rng), name


# --- Other scripts, typed and drawn -------------------------------------------------------------

# The letters kept, by script (each script's digits are not letters). Left out by eye besides:
# the letters like a digit or like a Latin letter that is, such as उ ड ङ ড র ร อ ว ვ ზ ნ ქ ዐ ዓ
# የ Գ Զ Յ Տ Օ գ զ յ օ ஒ உ ខ ទ ו ז ן ס ר ا ر ه و م ل.
WORLD_SCRIPTS = {
    "Devanagari": "अआऋऌऍऎएऐऑऒओऔकखगघचछजझञटठढणतथधनऩपफबभमयलळऴवशषसह",
    "Bengali": "অআইঈউঊঋঐকখগঘচছজঝঞটঠণথদধনপফভমযলশষসহ",
    "Tamil": "அஆஇஊஎஐஓஔகஙஜஞடணதநனபமயறலளழவஶஷஸஹ",
    "Thai": "กขฃคฅฆจฉชซฌญฎฏฐฑฒณถทธนบปผฝพฟภมยฤฦศษสหฬ",
    "Khmer": "កគឃងឆជឈញដឋឌឍណតថធបផពភមយលឝឞសហឡអ",
    "Georgian": "აბდთიკლორფღჩჭჯ",
    "Armenian": "ԱԲԵԷԸԹԺԻԼԽՀՂՃՄՆՈՊՌՍՎՐՒՓՔաբեէըթիխհղմնոպռսվտրփք",
    "Ethiopic": "ሀሃለላሐሓመማሠሣሰሳሸሻቀቃቈቋቐቓቘቛበቨቫቸቻኀኃኈኋኘኛአኣከካኰኳኸኻዀዃወዋዘዛዠዣደዳዸዻጀጃጋጐጓጘጛጠጣጨጫፈፋ",
    "Hebrew": "אבגהחטכמנעץצקשת",
    "Arabic": "بتثجحخذسشصضطظغػؼفقكنىي",
}
# Drawn by the stroke letters' hand, a letter like a Latin one (ட like L, น บ ป like u or U, พ ฟ
# like W, ი ო like n or m, ሀ like U, ש like W, س like w ...) would be one of the held-out stroke
# letters: world_strokes leaves them out, and Armenian, whose letters mostly are.
WORLD_STROKES_LEFT_OUT = set("டப" "นบปผฝพฟมกท" "កបពមលហ" "იორჩ" "ሀሃሰሳበለላከካሠሣመማ"
                             "חטכשתהצץ" "بتثسشنى")
NOTO = Path("/usr/share/fonts/truetype/noto")


@functools.cache
def noto_fonts(script):
    """The script's Noto fonts at 160 px: sans, serif and the others, regular and bold."""
    paths = sorted(NOTO.glob(f"Noto*{script}-Regular.ttf")) + sorted(
        NOTO.glob(f"Noto*{script}-Bold.ttf"))
    if not paths:
        raise SystemExit("world_scripts needs the Noto fonts: apt-get install fonts-noto-core")
    return [ImageFont.truetype(str(path), 160) for path in paths]


def world_letter(rng, script=None):
    script, letter, font = world_choice(rng, script)
    return typed_ink(letter, font, rng), f"{script} {letter}"


def world_choice(rng, script=None, left_out=(), scripts=tuple(sorted(WORLD_SCRIPTS))):
    """(script, letter, font): a script at random, then one of its letters and fonts."""
    script = script or scripts[rng.integers(len(scripts))]
    letters = [letter for letter in WORLD_SCRIPTS[script] if letter not in left_out]
    fonts = noto_fonts(script)
    letter = letters[rng.integers(len(letters))]
    return script, letter, fonts[rng.integers(len(fonts))]


def world_stroke(rng, script=None):
    """A letter of another script as a pen draws it: the typed letter's skeleton through `hand`,
    drawn with a pen 4-10% of the letter's size."""
    scripts = tuple(sorted(set(WORLD_SCRIPTS) - {"Armenian"}))
    script, letter, font = world_choice(rng, script, WORLD_STROKES_LEFT_OUT, scripts)
    points = skeleton_points(glyph_ink(letter, font))
    return draw(hand(points, rng), rng, width=rng.uniform(0.04, 0.10)), f"{script} {letter}"


def glyph_ink(character, font):
    """Ink (float, 1 = ink) of the character in the font, upright, cropped."""
    image = Image.new("L", (352, 352), 0)
    ImageDraw.Draw(image).text((176, 176), character, fill=255, font=font, anchor="mm")
    return cropped(np.asarray(image, np.float32) / 255)


def skeleton_points(ink, height=64, outline=False):
    """The ink's skeleton at `height` px, each pixel a one-point stroke (for `hand` and `draw`),
    in a box 1 high. `outline`: solid parts become their contour (a silhouette drawn as a pen
    draws its outline), thin strokes stay their centre line."""
    try:
        from skimage.morphology import skeletonize
    except ImportError:
        raise SystemExit("world_strokes and pictograms need scikit-image: "
                         "pip install scikit-image")
    image = Image.fromarray(np.uint8(255 * ink))
    width = max(2, round(image.width * height / image.height))
    shape = np.asarray(image.resize((width, height), Image.Resampling.BOX)) > 100
    if outline:
        shape &= ~ndimage.binary_erosion(shape, disk(2))
    ys, xs = np.nonzero(skeletonize(shape))
    return [[(x / height, y / height)] for x, y in zip(xs, ys)]


# --- Pictograms, drawn --------------------------------------------------------------------------

# Pictograms of the Noto symbol fonts: weather, phones, hands, chess pieces, music, things of an
# office and a home (a camera, a TV, books, a mailbox, charts, speakers). Left out by eye: the
# doodles' objects and their families (faces and skulls, houses and buildings, animals, trees and
# flowers, stars, hearts, suns and moons, lightning and mountains, arrows, circles and clocks,
# boxes, envelopes, eyes and glasses, flags, crosses), and those like a digit or a letter (an ear,
# a candle, a padlock, a magnifier, ♈ ♍ ♏ ♓ ♀ ♂ ♩ ♪ ♭, ♠ ♣ ◇).
PICTOGRAMS = ("☁☂☃☄☎☏☔☕☙☚☛☜☝☞☟☣☤☫☬☭♆♎♑♒♔♕♖♗♘♙♚♛♜♝♞♟♨♫♬♮"
              "🏖🏟🏷👆👇👈👉👌👍👎💳💻📈📉📊📋📚📟📦📪📫📭📷📹📺📻📽📾🔈🔉🔊🕏🕨🕩🕪🕫🕬🕮")
SYMBOL_FONTS = ("NotoSansSymbols2-Regular.ttf", "NotoSansSymbols-Regular.ttf",
                "NotoSansSymbols-Bold.ttf")


@functools.cache
def symbol_fonts():
    """[(font at 160 px, its characters)] of the Noto symbol fonts."""
    fonts = [font_and_characters(NOTO / name) for name in SYMBOL_FONTS if (NOTO / name).exists()]
    if not fonts:
        raise SystemExit("pictograms need the Noto fonts: apt-get install fonts-noto-core")
    return fonts


def pictogram(rng, glyph=None):
    """A pictogram as a pen draws it: its outline (the contour of solid parts) through `hand`,
    drawn with a pen 3-8% of its size."""
    glyph = glyph or PICTOGRAMS[rng.integers(len(PICTOGRAMS))]
    points = skeleton_points(glyph_ink(glyph, font_with(glyph, rng, symbol_fonts())), outline=True)
    return draw(hand(points, rng), rng, width=rng.uniform(0.03, 0.08)), f"pictogram {glyph}"


# --- On paper, as a file ------------------------------------------------------------------------

def as_picture(ink, rng, wide=False):
    """Ink (float, 1 = ink) as the bytes of an image file a person might make: the long side of
    the picture 60-300 px (a word: its height 60-300 px), the ink filling 45-85% of it; dark ink
    on light paper (75%), light on dark (15%) or coloured ink on tinted paper (10%); PNG, or JPEG
    at quality 30-90 (35%); faint noise on a quarter of them. Returns (bytes, format)."""
    ink = cropped(ink)
    side = int(rng.integers(60, 301))
    fill = rng.uniform(0.45, 0.85)
    if wide:
        scale = side * fill / ink.shape[0]
    else:
        scale = side * fill / max(ink.shape)
    height, width = (max(2, round(n * scale)) for n in ink.shape)
    if max(height, width) > 1100:  # within the reader's work size: the long side at most 1100
        factor = 1100 / max(height, width)
        height, width = max(2, round(height * factor)), max(2, round(width * factor))
    small = np.asarray(Image.fromarray(ink).resize((width, height), Image.Resampling.BOX if scale < 1
                                                    else Image.Resampling.BILINEAR), np.float32)
    page_h = max(height + 4, round(height / fill)) if wide else max(height + 4, side)
    page_w = max(width + 4, round(width + (page_h - height)))
    page = np.zeros((page_h, page_w), np.float32)
    top, left = rng.integers(0, page_h - height + 1), rng.integers(0, page_w - width + 1)
    page[top:top + height, left:left + width] = np.clip(small, 0, 1)
    style = rng.random()
    if style < 0.75:
        paper, pen = rng.uniform(0.85, 1.0), rng.uniform(0.0, 0.3)
        pixels = paper * (1 - page) + pen * page
    elif style < 0.9:
        paper, pen = rng.uniform(0.0, 0.15), rng.uniform(0.75, 1.0)
        pixels = paper * (1 - page) + pen * page
    else:
        paper = rng.uniform([0.85, 0.85, 0.7], 1.0)
        pen = rng.uniform([0.0, 0.0, 0.2], [0.25, 0.25, 0.6])
        pixels = paper * (1 - page[..., np.newaxis]) + pen * page[..., np.newaxis]
    if rng.random() < 0.25:
        pixels = pixels + rng.normal(0, rng.uniform(0.005, 0.03), pixels.shape)
    image = Image.fromarray(np.round(255 * np.clip(pixels, 0, 1)).astype(np.uint8))
    buffer = io.BytesIO()
    if rng.random() < 0.35:
        image.save(buffer, "JPEG", quality=int(rng.integers(30, 91)))
        return buffer.getvalue(), "JPEG"
    image.save(buffer, "PNG")
    return buffer.getvalue(), "PNG"


DRAWERS = {"font_letters": typed, "stroke_letters": stroke_letter, "doodles": doodle,
           "scribbles": scribble, "digit_overlaps": digit_overlap, "digit_pieces": digit_piece,
           "words": word, "kana_kanji": kana_kanji, "hershey_symbols": hershey_symbol,
           "world_scripts": world_letter, "world_strokes": world_stroke, "pictograms": pictogram}


def negative_ink(kind, rng, digits=None, labels=None):
    """(ink, what): one negative of the kind, drawn (not yet on paper)."""
    if kind not in DRAWERS:
        raise ValueError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
    if kind in NEEDS_MNIST:
        return DRAWERS[kind](rng, digits, labels)
    return DRAWERS[kind](rng)


def negative_pictures(kind, count, seed, digits=None, labels=None):
    """`count` pictures of the kind: a list of (file bytes, format, what it shows). The digit
    kinds draw on `digits` and `labels` (MNIST uint8 images and labels: pass training digits to
    train on, test digits to measure). Same arguments, same pictures."""
    if kind in NEEDS_MNIST and digits is None:
        raise ValueError(f"{kind} needs MNIST digits and labels")
    rng = np.random.default_rng([KINDS.index(kind), seed])
    pictures = []
    for _ in range(count):
        ink, what = negative_ink(kind, rng, digits, labels)
        data, fmt = as_picture(ink, rng, wide=kind == "words")
        pictures.append((data, fmt, what))
    return pictures


def negative_marks(kind, count, seed, digits=None, labels=None, reader=None):
    """The marks the picture reader finds in `count` pictures of the kind, as the product reads
    them: (marks float32 (M, 28, 28), picture index of each mark (M,), what each picture shows).
    `reader`: a module with decode_picture and find_digits (default: `pictures`). A picture the
    reader refuses as blank gives no mark."""
    if reader is None:
        from common import pictures as reader
    marks, owners, whats = [], [], []
    for index, (data, _, what) in enumerate(negative_pictures(kind, count, seed, digits, labels)):
        whats.append(what)
        try:
            found, _ = reader.find_digits(reader.decode_picture(data))
        except ValueError:
            continue
        marks.append(found)
        owners += [index] * len(found)
    marks = np.concatenate(marks) if marks else np.zeros((0, 28, 28), np.float32)
    return marks.astype(np.float32), np.array(owners, int), whats
