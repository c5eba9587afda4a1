"""A sheet of paper photographed on a darker surface (a table, a desk) -> the sheet alone, upright.

`sheet_in(glance)`: on a glance at a picture (the picture reduced: pictures.glance_at), the
sheet it shows (a large light region, nearly a rectangle, whatever its tilt, with a sharp edge
against a darker surround and darker marks on it), or None. `cut_out(grey, sheet, factor)`: the
part of the picture on that sheet, turned upright. An all-paper picture has no darker surround
and shows no sheet, nor does a picture of light ink on a dark background (its light strokes are
no rectangle, and hold no darker marks): the reader leaves those as they are.

NumPy, SciPy and Pillow only.
"""

import math
from typing import NamedTuple

import numpy as np
from PIL import Image
from scipy import ndimage

PAGE_AREA = 0.15  # the sheet's rectangle covers at least this share of the picture...
SURROUND = 0.05  # ...and leaves at least this share of it outside (the table)
ON_THE_BORDER = 0.25  # the darker surround runs along at least this share of the picture's edges
RECTANGULAR = 0.9  # the light region fills at least this share of its rectangle
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
    if not is_a_sheet(glance, sheet, inside, centre, angle, half_sizes):
        return None
    return Sheet(centre, angle, tuple(np.maximum(np.array(half_sizes) - INSET, 1)),
                 float(np.median(glance[sheet])))


def cut_out(grey, sheet, factor):
    """The part of the grey picture on the sheet found on its glance (the picture reduced by
    factor), turned upright."""
    return upright_crop(grey, factor * (np.array(sheet.centre) + 0.5), sheet.angle,
                        factor * np.array(sheet.half_sizes), sheet.paper)


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


def is_a_sheet(glance, sheet, inside, centre, angle, half_sizes):
    """The light region is a sheet on a darker surround: its rectangle covers PAGE_AREA of the
    picture or more and leaves SURROUND of it outside, the region fills RECTANGULAR of it, and
    its edge is sharp (PAGE_EDGE): not light falling off across paper, not light strokes."""
    covered = np.count_nonzero(inside) / inside.size
    if not PAGE_AREA <= covered <= 1 - SURROUND:
        return False
    if np.count_nonzero(sheet & inside) < RECTANGULAR * np.count_nonzero(inside):
        return False
    grown = within_rectangle(glance.shape, centre, angle, np.add(half_sizes, EDGE_WIDTH))
    shrunk = within_rectangle(glance.shape, centre, angle, np.subtract(half_sizes, EDGE_WIDTH))
    just_outside, just_inside = grown & ~inside, inside & ~shrunk
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
