"""Deterministic geometric transforms that keep image, mask and boxes in sync.

Every function takes a canonical example (see `visionjax.data.datasets`) and
explicit parameters, and returns the transformed example:

* ``image`` uint8 [H, W, 3] is resampled bilinearly (rounded back to uint8),
* ``mask`` int32 [H, W] by nearest neighbour, new pixels get `IGNORE` (255),
* ``instances`` int32 [H, W] (instance ids) exactly like ``mask``, but new
  pixels get 0 (no instance): `PER_PIXEL` lists these keys and their fill,
* ``boxes`` float32 [N, 4] normalized (x1, y1, x2, y2) ('xyxy', the package
  convention of `visionjax.ops.boxes`) are mapped by the same geometry,
  clipped to the frame, and dropped (together with every other per-box key,
  ``box_*``) when less than ``min_size_px`` of them is left. In pixels they
  are the normalized boxes times (W, H, W, H) (`pixel_boxes`). So
  ``box_instance`` (box k's id in ``instances``) stays aligned with them.

The random augmentations in `visionjax.data.augment` only sample parameters
and call these, so the geometry is tested once, against NumPy references, with
known parameters. All functions work eagerly and inside ``tf.data``.

Coordinates: pixel *edges* run from 0 to W (pixel i covers [i, i+1)); the
affine warp works in pixel *centre* coordinates (pixel i at i), the convention
of ``ImageProjectiveTransformV3``.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

Example = dict[str, tf.Tensor]
IGNORE = 255
MIN_BOX_PX = 1.0  # a box keeps at least this many pixels of height and width
# Per-pixel int32 label maps -> the value of pixels a transform brings in:
# class masks are ignored there, instance maps have no instance there.
PER_PIXEL = {"mask": IGNORE, "instances": 0}


def _per_pixel(ex: Example) -> list[tuple[str, int]]:
  """The example's per-pixel label maps (`PER_PIXEL` keys) and their fill."""
  return [(k, fill) for k, fill in PER_PIXEL.items() if k in ex]


def hw(ex: Example) -> tuple[tf.Tensor, tf.Tensor]:
  """Height and width of the example's image (int32 scalars)."""
  s = tf.shape(ex["image"])
  return s[0], s[1]


def box_fields(ex: Example) -> list[str]:
  """Keys holding one entry per box (``boxes`` and ``box_*``)."""
  return [k for k in ex if k == "boxes" or k.startswith("box_")]


def keep_boxes(ex: Example, keep: tf.Tensor) -> Example:
  """Drops the boxes where ``keep`` is False from every per-box field."""
  out = dict(ex)
  for k in box_fields(ex):
    out[k] = tf.boolean_mask(ex[k], keep)
  return out


def _to_uint8(x: tf.Tensor) -> tf.Tensor:
  return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)


def _fill(fill: Sequence[float] | float | tf.Tensor) -> tf.Tensor:
  return tf.broadcast_to(tf.cast(fill, tf.float32), [3])


def set_pixel_boxes(ex: Example, boxes_px: tf.Tensor, out_h, out_w,
                    min_size_px: float = MIN_BOX_PX,
                    keep: tf.Tensor | None = None) -> Example:
  """Stores ``boxes_px`` [N, 4] (xyxy pixel edges of the new frame, ``out_h``
  x ``out_w``) clipped to the frame and normalized.

  A box is dropped when, after clipping, its height or width is below
  ``min_size_px`` pixels (it left the frame), or where ``keep`` is False.
  """
  out_h, out_w = tf.cast(out_h, tf.float32), tf.cast(out_w, tf.float32)
  hi = tf.stack([out_w, out_h, out_w, out_h])  # xyxy
  clipped = tf.clip_by_value(boxes_px, 0.0, hi)
  tol = min_size_px - 1e-3  # normalized float32 boxes are off by ~1e-5 px
  ok = ((clipped[:, 2] - clipped[:, 0] >= tol) & (clipped[:, 3] - clipped[:, 1] >= tol))
  if keep is not None:
    ok &= keep
  out = keep_boxes({**ex, "boxes": clipped / hi}, ok)
  out["boxes"] = tf.reshape(out["boxes"], [-1, 4])
  return out


def pixel_boxes(ex: Example) -> tf.Tensor:
  """The example's boxes [N, 4] as xyxy pixel edges (normalized x W, H)."""
  h, w = hw(ex)
  h, w = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
  return tf.cast(ex["boxes"], tf.float32) * tf.stack([w, h, w, h])


def _pad_window(x: tf.Tensor, top, left, height, width, fill) -> tf.Tensor:
  """``x[top:top+height, left:left+width]`` with out-of-image parts = ``fill``.

  Crops the part inside the image first, then pads only up to the window
  (never the whole padded image); ``fill`` is a scalar or one per channel.
  """
  s = tf.shape(x)
  h, w = s[0], s[1]
  ya, yb = tf.clip_by_value(top, 0, h), tf.clip_by_value(top + height, 0, h)
  xa, xb = tf.clip_by_value(left, 0, w), tf.clip_by_value(left + width, 0, w)
  yb, xb = tf.maximum(yb, ya), tf.maximum(xb, xa)
  pt = tf.clip_by_value(ya - top, 0, height)
  pl = tf.clip_by_value(xa - left, 0, width)
  pad = [[pt, height - pt - (yb - ya)], [pl, width - pl - (xb - xa)]]
  inner = x[ya:yb, xa:xb]
  if x.shape.rank == 2:
    return tf.pad(inner, pad, constant_values=tf.cast(fill, x.dtype))
  fill = tf.cast(tf.broadcast_to(fill, [3]), x.dtype)
  # tf.pad fills with one scalar: pad each channel with its own value.
  return tf.stack([tf.pad(inner[..., c], pad, constant_values=fill[c])
                   for c in range(3)], axis=-1)


def crop_or_pad(ex: Example, top, left, height, width,
                fill: Sequence[float] | float = 0.0,
                min_size_px: float = MIN_BOX_PX,
                box_keep: tf.Tensor | None = None) -> Example:
  """The window [top, top+height) x [left, left+width) of the example.

  The window may extend past the image (negative ``top``/``left`` or beyond
  the far edge): image pixels there are ``fill`` (per channel, rounded to
  uint8), mask pixels `IGNORE`, instance pixels 0. So this one function implements cropping,
  padding and the SSD zoom-out canvas.
  """
  top, left = tf.cast(top, tf.int32), tf.cast(left, tf.int32)
  height, width = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
  out = dict(ex)
  fill_u8 = tf.cast(tf.clip_by_value(tf.round(_fill(fill)), 0.0, 255.0), tf.uint8)
  out["image"] = _pad_window(tf.cast(ex["image"], tf.uint8), top, left, height,
                             width, fill_u8)
  for k, pad in _per_pixel(ex):
    out[k] = _pad_window(ex[k], top, left, height, width, pad)
  if "boxes" in ex:
    shift = tf.cast(tf.stack([left, top, left, top]), tf.float32)  # xyxy
    out = set_pixel_boxes(out, pixel_boxes(ex) - shift, height, width,
                          min_size_px, box_keep)
  return out


def resize(ex: Example, size, antialias: bool = False) -> Example:
  """Resizes to ``size`` (h, w): bilinear image, nearest mask and instances;
  boxes follow.

  Normalized boxes are unchanged by a resize of the whole frame.
  """
  size = tf.cast(size, tf.int32)
  out = dict(ex)
  img = tf.image.resize(tf.cast(ex["image"], tf.float32), size,
                        method="bilinear", antialias=antialias)
  out["image"] = _to_uint8(img)
  for k, _ in _per_pixel(ex):
    out[k] = tf.image.resize(ex[k][..., None], size, method="nearest")[..., 0]
  return out


def flip_left_right(ex: Example) -> Example:
  """Mirrors the example horizontally."""
  out = dict(ex)
  # tf.reverse: a [:, ::-1] strided slice is ~10x slower on CPU.
  out["image"] = tf.reverse(ex["image"], [1])
  for k, _ in _per_pixel(ex):
    out[k] = tf.reverse(ex[k], [1])
  if "boxes" in ex:
    b = ex["boxes"]  # xyxy: x1' = 1 - x2 and x2' = 1 - x1 keep x1' <= x2'
    out["boxes"] = tf.stack([1.0 - b[:, 2], b[:, 1], 1.0 - b[:, 0], b[:, 3]], axis=1)
  return out


def fit_size(h, w, size: Sequence[int], *, keep_aspect: bool,
             allow_upscale: bool = True) -> tuple[tf.Tensor, tf.Tensor]:
  """(nh, nw) int32: the size `fit` scales an ``h`` x ``w`` image to, before
  any padding: the top-left part of the fitted example that shows the
  picture (all of ``size`` when stretching)."""
  th, tw = int(size[0]), int(size[1])
  if not keep_aspect:
    return tf.constant(th), tf.constant(tw)
  hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
  scale = tf.minimum(th / hf, tw / wf)
  if not allow_upscale:
    scale = tf.minimum(scale, 1.0)
  nh = tf.clip_by_value(tf.cast(tf.round(hf * scale), tf.int32), 1, th)
  nw = tf.clip_by_value(tf.cast(tf.round(wf * scale), tf.int32), 1, tw)
  return nh, nw


def fit(ex: Example, size: Sequence[int], *, keep_aspect: bool,
        allow_upscale: bool = True, fill: Sequence[float] | float = 0.0) -> Example:
  """Brings the example to exactly ``size`` (h, w), with a static shape.

  ``keep_aspect=False`` stretches the whole image to ``size``. With
  ``keep_aspect=True`` it is scaled to fit inside ``size`` (never enlarged
  unless ``allow_upscale``) and padded at the bottom/right with ``fill`` and
  mask `IGNORE`, so every labelled pixel is kept and padding is ignored.
  """
  th, tw = int(size[0]), int(size[1])
  h, w = hw(ex)
  nh, nw = fit_size(h, w, size, keep_aspect=keep_aspect, allow_upscale=allow_upscale)
  same = tf.logical_and(tf.equal(nh, h), tf.equal(nw, w))
  keys = list(ex)
  resized = tf.cond(same, lambda: {k: ex[k] for k in keys},
                    lambda: resize(ex, tf.stack([nh, nw])))
  if keep_aspect:
    resized = crop_or_pad(resized, 0, 0, th, tw, fill=fill)
  out = dict(resized)
  out["image"] = tf.ensure_shape(out["image"], [th, tw, 3])
  for k, _ in _per_pixel(out):
    out[k] = tf.ensure_shape(out[k], [th, tw])
  return out


# ----------------------------------------------------------------- affine warps
def centre_affine(h, w, linear: tf.Tensor, shift=(0.0, 0.0)) -> tf.Tensor:
  """3x3 forward map (x, y, 1) about the image centre, then shifted.

  ``linear`` is the 2x2 matrix acting on (x, y) (x = column); ``shift`` is
  (dy, dx) in pixels.
  """
  cy = (tf.cast(h, tf.float32) - 1.0) / 2.0
  cx = (tf.cast(w, tf.float32) - 1.0) / 2.0
  linear = tf.cast(linear, tf.float32)
  c = tf.stack([cx, cy])
  t = c - tf.linalg.matvec(linear, c) + tf.stack(
      [tf.cast(shift[1], tf.float32), tf.cast(shift[0], tf.float32)])
  top = tf.concat([linear, t[:, None]], axis=1)
  return tf.concat([top, tf.constant([[0.0, 0.0, 1.0]])], axis=0)


def rotation_matrix(degrees) -> tf.Tensor:
  """Counter-clockwise on screen (y points down) rotation by ``degrees``."""
  a = tf.cast(degrees, tf.float32) * (3.141592653589793 / 180.0)
  c, s = tf.cos(a), tf.sin(a)
  return tf.stack([tf.stack([c, s]), tf.stack([-s, c])])


def shear_matrix(shear_x_degrees, shear_y_degrees=0.0) -> tf.Tensor:
  kx = tf.tan(tf.cast(shear_x_degrees, tf.float32) * (3.141592653589793 / 180.0))
  ky = tf.tan(tf.cast(shear_y_degrees, tf.float32) * (3.141592653589793 / 180.0))
  return tf.stack([tf.stack([1.0, kx]), tf.stack([ky, 1.0])])


def zoom_matrix(zoom_y, zoom_x=None) -> tf.Tensor:
  """Scales content by (zoom_y, zoom_x): > 1 zooms in, < 1 zooms out."""
  zoom_x = zoom_y if zoom_x is None else zoom_x
  zy, zx = tf.cast(zoom_y, tf.float32), tf.cast(zoom_x, tf.float32)
  return tf.stack([tf.stack([zx, 0.0]), tf.stack([0.0, zy])])


def affine(ex: Example, forward: tf.Tensor, fill: Sequence[float] | float = 0.0,
           min_size_px: float = MIN_BOX_PX) -> Example:
  """Warps by the 3x3 ``forward`` map (input centre coords -> output coords).

  The output has the input's size. Boxes become the axis-aligned envelope of
  their four mapped corners (so a rotated object stays inside its box).
  """
  h, w = hw(ex)
  forward = tf.cast(forward, tf.float32)
  inv = tf.linalg.inv(forward)
  inv = inv / inv[2, 2]
  t = tf.reshape(inv, [9])[:8][None]
  out = dict(ex)
  f = _fill(fill)
  img = tf.raw_ops.ImageProjectiveTransformV3(
      images=(tf.cast(ex["image"], tf.float32) - f)[None], transforms=t,
      output_shape=tf.stack([h, w]), fill_value=0.0, interpolation="BILINEAR",
      fill_mode="CONSTANT")[0] + f
  out["image"] = _to_uint8(img)
  for k, pad in _per_pixel(ex):
    out[k] = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(ex[k], tf.int32)[None, ..., None], transforms=t,
        output_shape=tf.stack([h, w]), fill_value=float(pad),
        interpolation="NEAREST", fill_mode="CONSTANT")[0, ..., 0]
  if "boxes" in ex:
    b = pixel_boxes(ex)  # edges (x0, y0, x1, y1)
    xs = tf.stack([b[:, 0], b[:, 2], b[:, 0], b[:, 2]], 1) - 0.5  # -> centres
    ys = tf.stack([b[:, 1], b[:, 1], b[:, 3], b[:, 3]], 1) - 0.5
    nx = forward[0, 0] * xs + forward[0, 1] * ys + forward[0, 2] + 0.5
    ny = forward[1, 0] * xs + forward[1, 1] * ys + forward[1, 2] + 0.5
    env = tf.stack([tf.reduce_min(nx, 1), tf.reduce_min(ny, 1),
                    tf.reduce_max(nx, 1), tf.reduce_max(ny, 1)], 1)
    out = set_pixel_boxes(out, env, h, w, min_size_px)
  return out


def box_iou(boxes_a: tf.Tensor, boxes_b: tf.Tensor) -> tf.Tensor:
  """IoU matrix [A, B] of xyxy boxes [A, 4] and [B, 4] (any common units)."""
  a, b = boxes_a[:, None], boxes_b[None]
  iw = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
  ih = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
  inter = ih * iw
  area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])
  return inter / tf.maximum(area(a) + area(b) - inter, 1e-12)


def pad_boxes(ex: Example, max_boxes: int) -> Example:
  """Boxes/labels padded (or truncated) to ``max_boxes`` with a valid mask:
  static shapes for batching (``box_valid`` marks the real boxes).

  Returns ``boxes`` float [max_boxes, 4] normalized xyxy (padding all zero),
  ``box_labels`` int32, ``box_difficult`` and ``box_valid`` bool [max_boxes],
  and, when the example has instance masks, ``box_instance`` int32
  [max_boxes] (padding 0: no mask).
  """
  n = tf.minimum(tf.shape(ex["boxes"])[0], max_boxes)
  pad = max_boxes - n
  boxes = tf.pad(ex["boxes"][:n], [[0, pad], [0, 0]])
  labels = tf.pad(tf.cast(ex["box_labels"][:n], tf.int32), [[0, pad]])
  difficult = tf.pad(tf.cast(ex["box_difficult"][:n], tf.bool), [[0, pad]])
  valid = tf.range(max_boxes) < n
  out = {"boxes": tf.ensure_shape(boxes, [max_boxes, 4]),
         "box_labels": tf.ensure_shape(labels, [max_boxes]),
         "box_difficult": tf.ensure_shape(difficult, [max_boxes]),
         "box_valid": tf.ensure_shape(valid, [max_boxes])}
  if "box_instance" in ex:
    ids = tf.pad(tf.cast(ex["box_instance"][:n], tf.int32), [[0, pad]])
    out["box_instance"] = tf.ensure_shape(ids, [max_boxes])
  return out
