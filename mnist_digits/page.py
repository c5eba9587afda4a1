"""A sheet of paper photographed on a darker surface (a table, a desk) -> the sheet alone, upright.

`sheet_in(glance)`: on a glance at a picture (the picture reduced: pictures.glance_at), the
sheet it shows (a large light region, nearly a four-sided shape, whatever its tilt, with a sharp
edge against a darker surround and darker marks on it), or None. `cut_out(grey, sheet, factor)`:
the part of the picture on that sheet, turned upright; where the sheet is not quite a rectangle
(a photo taken a little from the side), the table left in its corners painted as paper. An
all-paper picture has no darker surround and shows no sheet, nor does a picture of light ink on
a dark background (its light strokes are no four-sided shape, and hold no darker marks): the
reader leaves those as they are.

NumPy, SciPy and Pillow only.
"""

import math
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

PAGE_AREA = 0.15  # the sheet's rectangle covers at least this share of the picture...
SURROUND = 0.05  # ...and leaves at least this share of it outside (the table)
ON_THE_BORDER = 0.25  # the darker surround runs along at least this share of the picture's edges
RECTANGULAR = 0.9  # the light region fills at least this share of its rectangle; or...
NEARLY_RECTANGULAR = 0.8  # ...this share (a page taken a little from the side fills 0.85 or
                          # more; light falling off across paper leaves regions of 0.69-0.75)
FOUR_SIDED = 0.9  # ...and it and its four corners' shape share this much of each
PAGE_EDGE = 0.15  # the sheet is this much lighter just inside its edge than just outside
EDGE_WIDTH = 2  # glance pixels either side of the edge where that is measured
INSET = 2  # glance pixels taken off the sheet all round (its edge, and the fit's error)
STRAIGHT = math.radians(0.5)  # a sheet turned by less is cut out as it is, not turned


class Sheet(NamedTuple):
    """A sheet found on a glance at a picture, in the glance's pixels."""
    centre: tuple  # (y, x)
    angle: float  # radians, within +-45 degrees: its sides turned by this from the picture's
    half_sizes: tuple  # (along the turned y, x), less INSET all round
    paper: float  # the sheet's typical light
    # Where the sheet is not quite a rectangle, None where it is: the glance's pixels to paint
    # over (the table within that rectangle, and the sheet's edge beside it), and each one's
    # paint: the light of the nearest paper kept
    table: np.ndarray | None
    paint: np.ndarray | None


def sheet_in(glance):
    """The sheet a glance at a grey picture (float, light paper) shows on a darker surround,
    or None: any picture that is all paper, or light ink on a dark background."""
    light = glance > otsu_threshold(glance)
    border = np.concatenate([light[0], light[-1], light[1:-1, 0], light[1:-1, -1]])
    if np.count_nonzero(~border) < ON_THE_BORDER * border.size:
        return None  # paper (or ruled lines, ink) all round: no surround
    sheet = largest_piece(holes_filled(light))
    if sheet is None or not (sheet & ~light).any():
        return None  # a light region with nothing written on it: a bold light stroke, no sheet
    centre, angle, half_sizes = smallest_rectangle(sheet)
    inside = within_rectangle(glance.shape, centre, angle, half_sizes)
    shape = four_sided(sheet, centre, angle)
    if not (is_a_sheet(glance, sheet, inside, inside, RECTANGULAR)
            or is_a_sheet(glance, sheet, inside, shape, NEARLY_RECTANGULAR)):
        return None
    half_sizes = tuple(np.maximum(np.array(half_sizes) - INSET, 1))
    within = within_rectangle(glance.shape, centre, angle, half_sizes)
    # The table: off the light region and on or beyond the sheet's four sides (ink written to the
    # sheet's edge is within them), and the sheet's edge beside it (a glance pixel). Where the
    # sheet is a rectangle, none: INSET takes off its edge.
    table = within & ndimage.binary_dilation(~sheet & ~ndimage.binary_erosion(shape))
    if not table.any():
        return Sheet(centre, angle, half_sizes, float(np.median(glance[sheet])), None, None)
    nearest = ndimage.distance_transform_edt(~(within & ~table & light), return_distances=False,
                                             return_indices=True)  # the nearest paper kept
    return Sheet(centre, angle, half_sizes, float(np.median(glance[sheet])), table,
                 glance[tuple(nearest)])


def cut_out(grey, sheet, factor):
    """The part of the grey picture on the sheet found on its glance (the picture reduced by
    factor), turned upright; the table within it, if any, painted over as the paper beside it."""
    upright = upright_crop(grey, factor * (np.array(sheet.centre) + 0.5), sheet.angle,
                           factor * np.array(sheet.half_sizes), sheet.paper)
    if sheet.table is None:
        return upright
    # the pixels to paint and their paint cut out and turned as the sheet is, on the glance,
    # then enlarged
    table, paint = (np.asarray(Image.fromarray(upright_crop(
        layer.astype(np.float32), np.array(sheet.centre) + 0.5, sheet.angle,
        np.array(sheet.half_sizes), sheet.paper)).resize(upright.shape[::-1],
                                                         Image.Resampling.BILINEAR))
        for layer in (sheet.table, sheet.paint))
    return np.where(table > 0, paint, upright)


def otsu_threshold(values, bins=64):
    """The level that best splits the values into two classes (Otsu's method)."""
    counts, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(counts)
    total = np.cumsum(counts * centres)
    below_mean = total / np.maximum(weight, 1)
    above_mean = (total[-1] - total) / np.maximum(weight[-1] - weight, 1)
    between = weight * (weight[-1] - weight) * (below_mean - above_mean) ** 2
    return edges[1:][np.argmax(between)]


def holes_filled(mask):
    """The mask with its holes filled, as scipy's binary_fill_holes fills them (the background
    4-connected to the picture's edge stays background), in a fraction of its time: one
    labelling of the background, where binary_fill_holes grows the outside a pixel at a time."""
    background, count = ndimage.label(~mask)  # 4-connected, as binary_fill_holes' default
    outside = np.zeros(count + 1, bool)
    outside[background[[0, -1], :]] = outside[background[:, [0, -1]]] = True
    outside[0] = False  # the mask itself
    return ~outside[background]


def largest_piece(mask):
    labels, count = ndimage.label(mask)
    if count == 0:
        return None
    return labels == 1 + np.argmax(np.bincount(labels.ravel())[1:])


def smallest_rectangle(mask):
    """(centre (y, x), angle in radians within +-45 degrees, half sizes (along the turned y,
    x)) of the smallest rectangle around the mask's pixels: the angle tried every degree,
    then every tenth of a degree about the best."""
    points = np.argwhere(mask & ~ndimage.binary_erosion(mask)).astype(np.float64)
    angles = np.radians(np.arange(-45, 45, 1.0))
    best = angles[np.argmin(rectangle_areas(points, angles))]
    angles = best + np.radians(np.arange(-1, 1.01, 0.1))
    best = angles[np.argmin(rectangle_areas(points, angles))]
    along = turned(points, best)
    low, high = along.min(axis=0) - 0.5, along.max(axis=0) + 0.5  # pixels, not their centres
    middle = (low + high) / 2
    cos, sin = math.cos(best), math.sin(best)
    centre = (middle[0] * cos + middle[1] * sin, -middle[0] * sin + middle[1] * cos)
    return centre, best, tuple((high - low) / 2)


def four_sided(mask, centre, angle):
    """The four-sided shape whose corners are the mask's pixels furthest towards each corner
    of its rectangle (centre, angle): the sheet's own corners, in a photo taken a little from
    the side as in one taken from above."""
    points = np.argwhere(mask & ~ndimage.binary_erosion(mask))
    along = turned(points - np.array(centre), angle)
    corners = [points[np.argmax(down * along[:, 0] + right * along[:, 1])]
               for down, right in ((-1, -1), (-1, 1), (1, 1), (1, -1))]
    shape = Image.new("1", mask.shape[::-1])
    ImageDraw.Draw(shape).polygon([(x, y) for y, x in corners], fill=1, outline=1)
    return np.asarray(shape)


def turned(points, angle):
    """(y, x) points in the frame of axes turned by angle (x towards y: clockwise on screen)."""
    cos, sin = math.cos(angle), math.sin(angle)
    return np.stack([points[:, 0] * cos - points[:, 1] * sin,
                     points[:, 0] * sin + points[:, 1] * cos], axis=1)


def rectangle_areas(points, angles):
    """The area of the rectangle around the points, its sides turned by each of the angles."""
    cos, sin = np.cos(angles)[:, np.newaxis], np.sin(angles)[:, np.newaxis]
    ys, xs = points[:, 0], points[:, 1]
    return (np.ptp(ys * cos - xs * sin, axis=1) + 1) * (np.ptp(ys * sin + xs * cos, axis=1) + 1)


def within_rectangle(shape, centre, angle, half_sizes):
    """The pixels of a picture of this shape whose centres lie in the rectangle."""
    rows, cols = np.indices(shape)
    offsets = np.stack([rows.ravel() - centre[0], cols.ravel() - centre[1]], axis=1)
    along = turned(offsets, angle)
    return ((np.abs(along[:, 0]) <= half_sizes[0]) & (np.abs(along[:, 1]) <= half_sizes[1])
            ).reshape(shape)


def is_a_sheet(glance, sheet, inside, shape, fill):
    """The light region is a sheet on a darker surround: its rectangle (`inside`) covers
    PAGE_AREA of the picture or more and leaves SURROUND of it outside, the region fills `fill`
    of it, the region and `shape` (the rectangle, or its corners' four-sided shape) are nearly
    the same (FOUR_SIDED), and the shape's edge is sharp (PAGE_EDGE): not light falling off
    across paper, not light strokes. (A sheet running off the picture is no four-sided shape,
    but may fill its rectangle.)"""
    covered = np.count_nonzero(inside) / inside.size
    if not PAGE_AREA <= covered <= 1 - SURROUND:
        return False
    if np.count_nonzero(sheet & inside) < fill * np.count_nonzero(inside):
        return False
    if np.count_nonzero(sheet & shape) < FOUR_SIDED * max(np.count_nonzero(sheet),
                                                          np.count_nonzero(shape)):
        return False  # (a round light region holds the shape of its corners, not the reverse)
    grown = ndimage.binary_dilation(shape, iterations=EDGE_WIDTH)
    shrunk = ndimage.binary_erosion(shape, iterations=EDGE_WIDTH)
    just_outside, just_inside = grown & ~shape, shape & ~shrunk
    if not just_outside.any():
        return False
    return np.median(glance[just_inside]) - np.median(glance[just_outside]) >= PAGE_EDGE


def upright_crop(grey, centre, angle, half_sizes, paper):
    """The rectangle (centre (y, x) and half sizes in the picture's pixels) cut out of the grey
    picture and turned upright (bilinear); outside the picture, paper."""
    height, width = (max(1, round(2 * half)) for half in half_sizes)
    top, left = centre[0] - height / 2, centre[1] - width / 2
    if abs(angle) < STRAIGHT:
        top, left = max(0, round(top)), max(0, round(left))
        return np.ascontiguousarray(grey[top:top + height, left:left + width])
    cos, sin = math.cos(angle), math.sin(angle)
    # output (x, y) -> picture (x, y): the rectangle's axes are turned by angle
    affine = [cos, -sin, centre[1] - cos * width / 2 + sin * height / 2,
              sin, cos, centre[0] - sin * width / 2 - cos * height / 2]
    # Only the part of the picture under the rectangle is handed to Pillow (a copy)
    xs, ys = (np.array([a * x + b * y + c for x in (0, width) for y in (0, height)])
              for a, b, c in (affine[:3], affine[3:]))
    x0, y0 = max(0, math.floor(xs.min()) - 2), max(0, math.floor(ys.min()) - 2)
    under = grey[y0:math.ceil(ys.max()) + 2, x0:math.ceil(xs.max()) + 2]
    affine[2] -= x0
    affine[5] -= y0
    return np.asarray(Image.fromarray(np.asarray(under, np.float32)).transform(
        (width, height), Image.Transform.AFFINE, affine, Image.Resampling.BILINEAR,
        fillcolor=paper))
