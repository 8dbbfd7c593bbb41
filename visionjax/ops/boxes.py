"""Box utilities: format conversion, area, IoU/GIoU, clipping, small-box removal.

Boxes are float arrays whose last axis has 4 coordinates. Formats:

* ``'xyxy'``   : (x1, y1, x2, y2), corners.
* ``'xywh'``   : (x1, y1, w, h), top-left corner and size (COCO's format).
* ``'cxcywh'`` : (cx, cy, w, h), centre and size.

"Normalized" boxes are the same formats divided by the image width (x, w) and
height (y, h); :func:`normalize_boxes`/:func:`denormalize_boxes` convert, for
any of the formats because every format alternates x-like and y-like values.
All functions are pure, jit/vmap-safe and broadcast over leading axes.

Coordinates must be finite. The IoU/GIoU functions check that only in checked
mode (``checkify.checkify``, e.g. :func:`visionjax.losses.checked`; see
:func:`check_finite_boxes`); unchecked, a box with a NaN coordinate gets IoU
and GIoU 0 with every box (the guarded divisions turn NaN into 0) and an inf
one IoU 0 or NaN.
"""
from __future__ import annotations

from jax.experimental import checkify
import jax.numpy as jnp

FORMATS = ("xyxy", "xywh", "cxcywh")


def check_boxes(boxes, name="boxes"):
  boxes = jnp.asarray(boxes)
  if boxes.ndim < 1 or boxes.shape[-1] != 4:
    raise ValueError(f"{name} has shape {boxes.shape}; expected [..., 4]")
  if not jnp.issubdtype(boxes.dtype, jnp.floating):
    boxes = boxes.astype(jnp.float32)
  return boxes


def check_finite_boxes(fn: str, boxes, name: str = "boxes", counted=None) -> None:
  """Checked mode: every (counted) box of ``boxes`` [..., 4] has finite coordinates.

  A ``checkify.debug_check``, so a no-op that compiles to nothing unless the
  caller runs under ``checkify.checkify``. The message names ``fn``, the first
  bad box's index over the leading axes and its 4 coordinates. ``counted``:
  optional bool [...] (broadcastable); boxes where it is False (masked
  padding) are not checked.
  """
  boxes = jnp.asarray(boxes)
  ok = jnp.all(jnp.isfinite(boxes), axis=-1)
  if counted is not None:
    ok = ok | ~jnp.broadcast_to(jnp.asarray(counted, bool), ok.shape)
  if ok.size == 0:
    return
  first = jnp.argmin(ok.reshape(-1))  # first bad box in row-major order
  index = {f"i{d}": i for d, i in enumerate(jnp.unravel_index(first, ok.shape))}
  where = "[" + ", ".join("{" + k + "}" for k in index) + (", :]" if index else ":]")
  checkify.debug_check(
      jnp.all(ok), f"{fn}: {name} must have finite coordinates; got {name}{where} = {{box}}",
      box=boxes.reshape(-1, 4)[first], **index)


def _check_fmt(fmt, name):
  if fmt not in FORMATS:
    raise ValueError(f"{name}={fmt!r}; expected one of {FORMATS}")


def box_convert(boxes, in_fmt: str, out_fmt: str):
  """Converts boxes [..., 4] between 'xyxy', 'xywh' and 'cxcywh'.

  xywh -> xyxy: (x, y, x + w, y + h); cxcywh -> xyxy: (cx - w/2, cy - h/2,
  cx + w/2, cy + h/2); and the inverses. Works the same on normalized boxes.
  """
  _check_fmt(in_fmt, "in_fmt")
  _check_fmt(out_fmt, "out_fmt")
  boxes = check_boxes(boxes)
  if in_fmt == out_fmt:
    return boxes
  a, b, c, d = jnp.moveaxis(boxes, -1, 0)
  if in_fmt == "xywh":
    x1, y1, x2, y2 = a, b, a + c, b + d
  elif in_fmt == "cxcywh":
    x1, y1, x2, y2 = a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d
  else:
    x1, y1, x2, y2 = a, b, c, d
  if out_fmt == "xyxy":
    out = (x1, y1, x2, y2)
  elif out_fmt == "xywh":
    out = (x1, y1, x2 - x1, y2 - y1)
  else:
    out = (0.5 * (x1 + x2), 0.5 * (y1 + y2), x2 - x1, y2 - y1)
  return jnp.stack(out, axis=-1)


def _wh_scale(image_size, dtype):
  """(height, width) [..., 2] -> scale [..., 4] = (w, h, w, h)."""
  hw = jnp.asarray(image_size, dtype)
  if hw.shape[-1:] != (2,):
    raise ValueError(f"image_size has shape {hw.shape}; expected [..., 2] = (height, width)")
  return jnp.stack([hw[..., 1], hw[..., 0], hw[..., 1], hw[..., 0]], axis=-1)


def normalize_boxes(boxes, image_size):
  """Divides x-like coordinates by the width and y-like ones by the height.

  ``image_size``: (height, width), or [..., 2] broadcastable against the box
  batch axes (e.g. [B, 1, 2] for boxes [B, N, 4]). Any box format.
  """
  boxes = check_boxes(boxes)
  return boxes / _wh_scale(image_size, boxes.dtype)


def denormalize_boxes(boxes, image_size):
  """Inverse of :func:`normalize_boxes`."""
  boxes = check_boxes(boxes)
  return boxes * _wh_scale(image_size, boxes.dtype)


def box_area(boxes, fmt: str = "xyxy"):
  """Area [...] of boxes [..., 4]: max(x2 - x1, 0) * max(y2 - y1, 0).

  Negative widths/heights (degenerate boxes) count as 0 area.
  """
  boxes = box_convert(boxes, fmt, "xyxy")
  return (jnp.maximum(boxes[..., 2] - boxes[..., 0], 0) *
          jnp.maximum(boxes[..., 3] - boxes[..., 1], 0))


def _iou_terms(a, b):
  """Broadcasting IoU pieces for xyxy boxes a [..., 4], b [..., 4]."""
  area_a = box_area(a)
  area_b = box_area(b)
  lt = jnp.maximum(a[..., :2], b[..., :2])
  rb = jnp.minimum(a[..., 2:], b[..., 2:])
  wh = jnp.maximum(rb - lt, 0)
  inter = wh[..., 0] * wh[..., 1]
  union = area_a + area_b - inter
  enc_wh = jnp.maximum(jnp.maximum(a[..., 2:], b[..., 2:]) - jnp.minimum(a[..., :2], b[..., :2]), 0)
  enclosing = enc_wh[..., 0] * enc_wh[..., 1]
  return inter, union, enclosing


def _safe_div(num, den):
  # where-guarded denominator keeps gradients finite for empty boxes.
  ok = den > 0
  return jnp.where(ok, num / jnp.where(ok, den, 1), 0)


def _iou_giou(a, b, giou: bool):
  inter, union, enclosing = _iou_terms(a, b)
  iou = _safe_div(inter, union)
  if not giou:
    return iou
  return iou - _safe_div(enclosing - union, enclosing)


def _pairwise(fn, a, b, fmt):
  a, b = check_boxes(a, "boxes1"), check_boxes(b, "boxes2")
  check_finite_boxes(fn, a, "boxes1")
  check_finite_boxes(fn, b, "boxes2")
  a = box_convert(a, fmt, "xyxy")
  b = box_convert(b, fmt, "xyxy")
  if a.ndim < 2 or b.ndim < 2:
    raise ValueError(f"boxes1/boxes2 have shapes {a.shape}/{b.shape}; expected [..., N, 4] "
                     "and [..., M, 4]")
  return a[..., :, None, :], b[..., None, :, :]


def box_iou(boxes1, boxes2, fmt: str = "xyxy"):
  """Pairwise IoU [..., N, M] of boxes1 [..., N, 4] and boxes2 [..., M, 4].

  IoU = |A ∩ B| / |A ∪ B|; defined as 0 when the union is empty.
  """
  a, b = _pairwise("box_iou", boxes1, boxes2, fmt)
  return _iou_giou(a, b, giou=False)


def generalized_box_iou(boxes1, boxes2, fmt: str = "xyxy"):
  """Pairwise GIoU [..., N, M] (Rezatofighi et al. 2019).

  GIoU = IoU - (|C| - |A ∪ B|) / |C|, C the smallest box enclosing A and B;
  in [-1, 1]. Terms with an empty denominator are 0.
  """
  a, b = _pairwise("generalized_box_iou", boxes1, boxes2, fmt)
  return _iou_giou(a, b, giou=True)


def _elementwise(fn, boxes1, boxes2, fmt):
  a, b = check_boxes(boxes1, "boxes1"), check_boxes(boxes2, "boxes2")
  check_finite_boxes(fn, a, "boxes1")
  check_finite_boxes(fn, b, "boxes2")
  return box_convert(a, fmt, "xyxy"), box_convert(b, fmt, "xyxy")


def box_iou_elementwise(boxes1, boxes2, fmt: str = "xyxy"):
  """IoU of corresponding boxes: [...] for boxes1, boxes2 [..., 4] (broadcast)."""
  a, b = _elementwise("box_iou_elementwise", boxes1, boxes2, fmt)
  return _iou_giou(a, b, giou=False)


def generalized_box_iou_elementwise(boxes1, boxes2, fmt: str = "xyxy"):
  """GIoU of corresponding boxes: [...] for boxes1, boxes2 [..., 4] (broadcast)."""
  a, b = _elementwise("generalized_box_iou_elementwise", boxes1, boxes2, fmt)
  return _iou_giou(a, b, giou=True)


def clip_boxes(boxes, image_size, fmt: str = "xyxy"):
  """Clips boxes to the image: x in [0, width], y in [0, height].

  ``image_size`` is (height, width) or [..., 2] broadcastable over the batch
  axes. Returns boxes in ``fmt`` (converted through xyxy).
  """
  xyxy = box_convert(boxes, fmt, "xyxy")
  hi = _wh_scale(image_size, xyxy.dtype)
  clipped = jnp.clip(xyxy, 0, hi)
  return box_convert(clipped, "xyxy", fmt)


def remove_small_boxes(boxes, min_size: float, fmt: str = "xyxy"):
  """Keep-mask [...] of boxes whose width and height are both >= min_size.

  Returns a bool mask instead of indices so shapes stay static under jit
  (use it as a ``valid`` mask, or ``jnp.nonzero(mask, size=...)`` outside).
  """
  xywh = box_convert(boxes, fmt, "xywh")
  return (xywh[..., 2] >= min_size) & (xywh[..., 3] >= min_size)
