"""COCO ``segmentation`` fields -> binary masks, as pycocotools decodes them.

An annotation's ``segmentation`` is either a list of polygons
``[[x1, y1, x2, y2, ...], ...]`` (pixel coordinates; the object is their
union) or a run-length encoding ``{'size': [h, w], 'counts': ...}`` whose
counts are a list of ints (uncompressed, as COCO stores ``iscrowd`` objects)
or pycocotools' compressed string. Runs alternate background / foreground,
starting with background, down each column (column-major).

Written by hand because pycocotools is a test-only dependency (a C
extension) and the data layer cannot import `visionjax.metrics`: the polygon
rasterizer is a NumPy transcription of pycocotools' ``rleFrPoly`` (maskApi.c:
vertices scaled by 5 and rounded, edges walked densely, a pixel column's
crossings sampled at its centre) and the string decoder of ``rleFrString``,
so masks equal ``pycocotools.mask.decode(frPyObjects(...))`` pixel for
pixel (tests/test_data_instances_coco.py compares them). Host-side, once per
annotation while a dataset is prepared.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def polygon_counts(xy, h: int, w: int) -> np.ndarray:
  """Run lengths (int64) of one polygon ``[x1, y1, x2, y2, ...]`` rasterized
  into an ``h`` x ``w`` image, as pycocotools' ``rleFrPoly``."""
  xy = np.asarray(xy, np.float64).reshape(-1, 2)
  scale = 5.0
  # C's (int)(v + .5): truncation toward zero.
  x = np.trunc(scale * xy[:, 0] + 0.5).astype(np.int64)
  y = np.trunc(scale * xy[:, 1] + 0.5).astype(np.int64)
  x, y = np.append(x, x[0]), np.append(y, y[0])
  us, vs = [], []
  for j in range(len(xy)):  # every upsampled point along each edge
    xs, xe, ys, ye = int(x[j]), int(x[j + 1]), int(y[j]), int(y[j + 1])
    dx, dy = abs(xe - xs), abs(ys - ye)
    flip = (dx >= dy and xs > xe) or (dx < dy and ys > ye)
    if flip:
      xs, xe, ys, ye = xe, xs, ye, ys
    d = np.arange((dx if dx >= dy else dy) + 1)
    if dx >= dy:
      s = (ye - ys) / dx if dx else 0.0
      t = dx - d if flip else d
      us.append(t + xs)
      vs.append(np.trunc(ys + s * t + 0.5).astype(np.int64))
    else:
      s = (xe - xs) / dy
      t = dy - d if flip else d
      vs.append(t + ys)
      us.append(np.trunc(xs + s * t + 0.5).astype(np.int64))
  u, v = np.concatenate(us), np.concatenate(vs)
  # Points where the boundary crosses into a new upsampled column, kept where
  # that column is a pixel centre: (column, first row below the boundary).
  j = np.flatnonzero(u[1:] != u[:-1]) + 1
  xd = (np.where(u[j] < u[j - 1], u[j], u[j] - 1) + 0.5) / scale - 0.5
  ok = (np.floor(xd) == xd) & (xd >= 0) & (xd <= w - 1)
  yd = (np.minimum(v[j], v[j - 1]) + 0.5) / scale - 0.5
  yd = np.ceil(np.clip(yd, 0, h))
  a = np.sort(np.append(xd[ok].astype(np.int64) * h + yd[ok].astype(np.int64), h * w))
  a = np.diff(a, prepend=0)
  # Zero-length runs are merged into the run two before them.
  b = [int(a[0])]
  k = 1
  while k < len(a):
    if a[k] > 0:
      b.append(int(a[k]))
      k += 1
    else:
      k += 1
      if k < len(a):
        b[-1] += int(a[k])
        k += 1
  return np.asarray(b, np.int64)


def string_counts(s: str | bytes) -> np.ndarray:
  """Run lengths of a compressed COCO RLE string, as ``rleFrString``: 6-bit
  chunks offset by 48, low bits first, 0x20 = more chunks, the last chunk's
  0x10 = negative; from the third count on, a delta to the count two back."""
  data = s.encode("ascii") if isinstance(s, str) else bytes(s)
  counts: list[int] = []
  p = 0
  while p < len(data):
    x, k, more = 0, 0, True
    while more:
      if p >= len(data):
        raise ValueError("the RLE string ends inside a count")
      c = data[p] - 48
      x |= (c & 0x1F) << (5 * k)
      more = bool(c & 0x20)
      p += 1
      k += 1
      if not more and c & 0x10:
        x -= 1 << (5 * k)
    if len(counts) > 2:
      x += counts[-2]
    counts.append(x)
  return np.asarray(counts, np.int64)


def counts_to_mask(counts, h: int, w: int) -> np.ndarray:
  """bool [h, w] of run lengths (background first, column-major)."""
  counts = np.asarray(counts, np.int64).reshape(-1)
  if np.any(counts < 0) or counts.sum() != h * w:
    raise ValueError(f"RLE counts sum to {int(counts.sum())}; expected non-negative counts "
                     f"summing to h*w = {h * w} (size [{h}, {w}])")
  values = np.arange(len(counts)) % 2 == 1
  return np.repeat(values, counts).reshape(w, h).T


def segmentation_mask(segm: Any, h: int, w: int) -> np.ndarray | None:
  """bool [h, w] of a COCO annotation's ``segmentation`` in an ``h`` x ``w``
  image; None when it has no usable shape.

  Polygons with an odd number of coordinates or fewer than 3 points are
  skipped (as detectron2's COCO loader does; pycocotools would read a first
  polygon of 4 numbers as a box); the mask is the union of the rest. An RLE
  must have ``size == [h, w]``. Other malformed values raise ValueError.
  """
  if isinstance(segm, dict):
    if "counts" not in segm or "size" not in segm:
      raise ValueError(f"RLE segmentation has keys {sorted(segm)}; expected 'size' and "
                       "'counts'")
    size = [int(v) for v in segm["size"]]
    if size != [h, w]:
      raise ValueError(f"RLE size {size} differs from the image's [height, width] [{h}, {w}]")
    counts = segm["counts"]
    if isinstance(counts, (str, bytes)):
      counts = string_counts(counts)
    return counts_to_mask(counts, h, w)
  if isinstance(segm, (list, tuple)):
    polygons = [p for p in segm if isinstance(p, (list, tuple)) and len(p) >= 6
                and len(p) % 2 == 0]
    if not polygons:
      return None
    mask = np.zeros((h, w), bool)
    for p in polygons:
      mask |= counts_to_mask(polygon_counts(p, h, w), h, w)
    return mask
  if segm is None:
    return None
  raise ValueError(f"segmentation is a {type(segm).__name__}; expected a list of polygons "
                   "or an RLE dict {'size': [h, w], 'counts': ...}")
