"""Drawing on images as uint8 arrays, with NumPy and Pillow (no matplotlib).

In the manner of torchvision's ``draw_bounding_boxes`` and
``draw_segmentation_masks``, but on channels-last images: every function takes
an image uint8 [H, W, 3] (or [H, W] / [H, W, 1]), or a float image in [0, 1],
and returns a new uint8 [H, W, 3] array (the input is never modified), ready
for ``PIL.Image.fromarray``, TensorBoard or ``imshow``.

Pixel geometry: coordinates are continuous, pixel (row i, column j) covers
[j, j + 1) x [i, i + 1). A box's edges are rounded to the nearest pixel
boundary and the box covers the pixels inside them, so normalized (0, 0, 1, 1)
is the whole image and the pixel box (2, 1, 5, 4) covers columns 2..4 and rows
1..3. (torchvision also paints column x2 and row y2: one pixel more.)
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFont

from visionjax.viz.palette import colorize, palette

# A colour: a name or hex string ("red", "#ff8000"), or 3 numbers; integers
# are 0..255, floats (Python floats or a float array) are in [0, 1].
Colour = Union[str, Sequence[float], np.ndarray]


def _round_uint8(x: np.ndarray) -> np.ndarray:
  # Half up rather than NumPy's half to even, so blends are easy to hand-check.
  return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def to_uint8(image: np.ndarray) -> np.ndarray:
  """Any supported image -> a new uint8 [H, W, 3] array.

  Args:
    image: uint8 [H, W], [H, W, 1] or [H, W, 3]; or floating with values in
      [0, 1] (scaled by 255, rounded half up, clipped); or bool (0 / 255).

  Returns:
    uint8 [H, W, 3]; grey images repeated over the channels.
  """
  x = np.asarray(image)
  if x.ndim == 2:
    x = x[..., None]
  if x.ndim != 3 or x.shape[-1] not in (1, 3):
    raise ValueError(f"expected an image [H, W], [H, W, 1] or [H, W, 3]; got {x.shape}")
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  if x.dtype == np.uint8:
    return x.copy()
  if x.dtype == bool:
    return x.astype(np.uint8) * 255
  if np.issubdtype(x.dtype, np.floating):
    return _round_uint8(x.astype(np.float64) * 255.0)
  # Other integer images (uint16, int32) have no agreed range: refuse to guess.
  raise TypeError(f"expected a uint8, bool or float image in [0, 1]; got dtype {x.dtype}")


def _parse_colour(c: Colour) -> np.ndarray:
  """One colour -> uint8 [3]."""
  if isinstance(c, str):
    return np.array(ImageColor.getrgb(c)[:3], np.uint8)
  a = np.asarray(c)
  if a.shape != (3,):
    raise ValueError(f"a colour is a string or 3 numbers; got {c!r}")
  if np.issubdtype(a.dtype, np.floating):
    return _round_uint8(a * 255.0)
  return np.clip(a, 0, 255).astype(np.uint8)


def _parse_colours(colors: Union[Colour, Sequence[Colour]], n: int) -> np.ndarray:
  """One colour for all, or one per item -> uint8 [n, 3]."""
  if isinstance(colors, str):
    single = True
  elif isinstance(colors, np.ndarray):
    single = colors.ndim == 1
  else:  # a list or tuple: one colour only if it is 3 numbers
    single = len(colors) == 3 and all(isinstance(v, (int, float, np.number)) for v in colors)
  if single:
    return np.tile(_parse_colour(colors), (n, 1))
  out = np.stack([_parse_colour(c) for c in colors]) if len(colors) else np.zeros((0, 3), np.uint8)
  if len(out) != n:
    raise ValueError(f"got {len(out)} colours for {n} items")
  return out


def overlay(image: np.ndarray, top: np.ndarray, alpha: float = 0.5,
            where: Optional[np.ndarray] = None) -> np.ndarray:
  """Alpha-blends ``top`` over ``image``: ``(1 - alpha) image + alpha top``.

  Both are first brought to uint8 (see `to_uint8`), the blend is done in
  float on the 0..255 values and rounded half up.

  Args:
    image: the picture, uint8 or float in [0, 1], [H, W(, 1|3)].
    top: what to lay over it, same kinds and [H, W].
    alpha: opacity of ``top`` in [0, 1].
    where: optional bool [H, W]; pixels where it is False keep ``image``.

  Returns:
    uint8 [H, W, 3].
  """
  if not 0.0 <= alpha <= 1.0:
    raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
  img = to_uint8(image)
  tp = to_uint8(top)
  if tp.shape != img.shape:
    raise ValueError(f"top {tp.shape[:2]} and image {img.shape[:2]} differ in size")
  out = _round_uint8((1.0 - alpha) * img.astype(np.float64) + alpha * tp.astype(np.float64))
  if where is not None:
    where = np.asarray(where, bool)
    if where.shape != img.shape[:2]:
      raise ValueError(f"where {where.shape} must be the image's [H, W] {img.shape[:2]}")
    out = np.where(where[..., None], out, img)
  return out


def draw_masks(image: np.ndarray, mask: np.ndarray, num_classes: int, alpha: float = 0.5,
               ignore_index: int = 255,
               colors: Optional[Sequence[Colour]] = None, *,
               background: Optional[int] = None) -> np.ndarray:
  """Colours a class-id mask over an image.

  Every pixel is blended with its class colour (class 0, background, is black
  in the default palette, so the background darkens by ``alpha``); pixels
  equal to ``ignore_index`` with white.

  Args:
    image: uint8 [H, W, 3] or float in [0, 1] (see `to_uint8`).
    mask: integer class ids [H, W]; ids outside [0, num_classes) other than
      ``ignore_index`` are clipped into it.
    num_classes: K, the number of classes.
    alpha: opacity of the colours in [0, 1]; 1 gives the colour mask alone.
    ignore_index: the id drawn white (VOC's object borders).
    colors: optional K colours (see `Colour`) instead of the VOC palette.
    background: a class id whose pixels keep the image untouched (e.g. 0 on
      photos, where a darkened background hides the scene); None blends all.

  Returns:
    uint8 [H, W, 3]: ``round((1 - alpha) * image + alpha * colour)``, and the
    image itself where ``mask == background``.
  """
  mask = np.asarray(mask)
  img = to_uint8(image)
  if mask.shape != img.shape[:2]:
    raise ValueError(f"mask {mask.shape} must be the image's [H, W] {img.shape[:2]}")
  if colors is None:
    rgb = to_uint8(colorize(mask, num_classes, ignore_index))
  else:
    pal = _parse_colours(colors, num_classes)
    rgb = pal[np.clip(mask, 0, num_classes - 1)]
    rgb[mask == ignore_index] = 255
  out = overlay(img, rgb, alpha)
  if background is not None:
    keep = mask == background
    out[keep] = img[keep]
  return out


def triptych(image: np.ndarray, gt_mask: np.ndarray, pred_mask: np.ndarray, num_classes: int,
             alpha: float = 0.55, gt_alpha: float = 1.0, ignore_index: int = 255,
             gap: int = 2) -> np.ndarray:
  """Image | ground truth | prediction, side by side in one array.

  Args:
    image: uint8 [H, W, 3] or float in [0, 1].
    gt_mask: class ids [H, W]; drawn with opacity ``gt_alpha`` (default 1:
      the plain colour mask, ignored pixels white).
    pred_mask: class ids [H, W] (e.g. ``argmax(logits, -1)``); drawn over the
      image with opacity ``alpha``.
    num_classes: K.
    alpha: prediction opacity in [0, 1].
    gt_alpha: ground-truth opacity in [0, 1].
    ignore_index: the id drawn white.
    gap: width in pixels of the white bands between the panels.

  Returns:
    uint8 [H, 3 W + 2 gap, 3].
  """
  img = to_uint8(image)
  h = img.shape[0]
  band = np.full((h, gap, 3), 255, np.uint8)
  return np.concatenate([
      img, band, draw_masks(img, gt_mask, num_classes, gt_alpha, ignore_index), band,
      draw_masks(img, pred_mask, num_classes, alpha, ignore_index)], axis=1)


def _fill(img: np.ndarray, r0: int, r1: int, c0: int, c1: int, colour: np.ndarray) -> None:
  """Paints rows r0..r1, columns c0..c1 (inclusive), clipped to the image."""
  h, w = img.shape[:2]
  r0, r1, c0, c1 = max(r0, 0), min(r1, h - 1), max(c0, 0), min(c1, w - 1)
  if r0 <= r1 and c0 <= c1:
    img[r0:r1 + 1, c0:c1 + 1] = colour


def _edge(v: float) -> int:
  # Round half up to the nearest pixel boundary: 0.3 * 10 = 3.0000000000000004
  # must land on boundary 3, as a floor/ceil rule would not.
  return int(np.floor(v + 0.5))


def draw_boxes(image: np.ndarray, boxes: np.ndarray, labels: Optional[np.ndarray] = None,
               scores: Optional[np.ndarray] = None,
               class_names: Optional[Sequence[str]] = None,
               colors: Optional[Union[Colour, Sequence[Colour]]] = None, width: int = 2, *,
               normalized: bool = True, tags: bool = True,
               font_size: Optional[int] = None) -> np.ndarray:
  """Draws box outlines, with optional ``name score`` tags, on an image.

  Borders are painted inward from the box edges (see the module docstring for
  the pixel geometry), so a box never grows past its own extent; parts outside
  the image are dropped (a box wholly outside, tag included). Later boxes are
  drawn over earlier ones, and all tags over all borders.

  Args:
    image: uint8 [H, W, 3] or float in [0, 1] (see `to_uint8`).
    boxes: [N, 4] (x1, y1, x2, y2): normalized to [0, 1] of the width and
      height (the package's convention, e.g.
      `visionjax.detection.postprocessing.Detections`), or pixels when
      ``normalized=False``. Boxes with a non-finite coordinate are skipped.
    labels: optional class ids [N]; pick the colours and the tag's name.
    scores: optional [N]; appended to the tag as ``0.87``.
    class_names: optional names indexed by label (otherwise the tag shows the
      label number).
    colors: one colour for all boxes or one per box (see `Colour`); by default
      class c gets VOC palette colour c + 1 (palette colour 0 is black), or box
      i colour i + 1 when there are no labels.
    width: border width in pixels (>= 1).
    normalized: whether ``boxes`` are normalized (default) or pixels.
    tags: whether to write the ``name score`` tags (given labels or scores);
      False keeps only the outlines, e.g. for colour by class on tiny images.
    font_size: tag font size in pixels; Pillow's default font when None.

  Returns:
    uint8 [H, W, 3].
  """
  if width < 1:
    raise ValueError(f"width must be >= 1; got {width}")
  img = to_uint8(image)
  h, w = img.shape[:2]
  b = np.asarray(boxes, np.float64).reshape(-1, 4)
  n = len(b)
  if normalized:
    b = b * np.array([w, h, w, h], np.float64)
  if labels is not None:
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if len(labels) != n:
      raise ValueError(f"{len(labels)} labels for {n} boxes")
  if scores is not None:
    scores = np.asarray(scores, np.float64).reshape(-1)
    if len(scores) != n:
      raise ValueError(f"{len(scores)} scores for {n} boxes")
  if colors is not None:
    cols = _parse_colours(colors, n)
  else:
    idx = (labels if labels is not None else np.arange(n)) + 1
    cols = to_uint8(palette(int(idx.max(initial=0)) + 1)[None])[0][np.maximum(idx, 0)]

  tag_list = []  # (left, top, colour, text) of the boxes to tag
  for i in range(n):
    if not np.all(np.isfinite(b[i])):
      continue
    x1, x2 = sorted(b[i, [0, 2]])
    y1, y2 = sorted(b[i, [1, 3]])
    left, top = _edge(x1), _edge(y1)
    # The last pixel inside; at least one pixel for degenerate boxes.
    right, bottom = max(_edge(x2) - 1, left), max(_edge(y2) - 1, top)
    if left > w - 1 or right < 0 or top > h - 1 or bottom < 0:
      continue  # wholly outside: no border, and no tag pinned to the edge
    c = cols[i]
    _fill(img, top, min(top + width - 1, bottom), left, right, c)
    _fill(img, max(bottom - width + 1, top), bottom, left, right, c)
    _fill(img, top, bottom, left, min(left + width - 1, right), c)
    _fill(img, top, bottom, max(right - width + 1, left), right, c)
    text = ""
    if labels is not None:
      lab = int(labels[i])
      text = class_names[lab] if class_names is not None else str(lab)
    if scores is not None:
      text = f"{text} {scores[i]:.2f}".strip()
    if text and tags:
      tag_list.append((left, top, c, text))

  if tag_list:
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    font = ImageFont.load_default() if font_size is None else ImageFont.load_default(font_size)
    pad = 1
    for left, top, c, text in tag_list:
      x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
      tw, th = x1 - x0 + 2 * pad, y1 - y0 + 2 * pad
      # Above the box when there is room, else just inside its top edge.
      ty = top - th if top - th >= 0 else max(top, 0)
      tx = max(min(left, w - tw), 0)
      draw.rectangle((tx, ty, tx + tw - 1, ty + th - 1), fill=tuple(int(v) for v in c))
      # Dark text on light colours and light on dark (ITU-R 601 luma).
      ink = (0, 0, 0) if 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] > 128 else (255, 255, 255)
      draw.text((tx + pad - x0, ty + pad - y0), text, fill=ink, font=font)
    img = np.asarray(pil).copy()
  return img
