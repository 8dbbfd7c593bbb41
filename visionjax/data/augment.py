"""Augmentations on canonical examples, as small ``(seed, ex) -> ex`` factories.

A canonical example is a dict with ``image`` uint8 [H, W, 3] and, depending on
the dataset, ``label`` [], ``mask`` int32 [H, W] (255 = ignore), ``instances``
int32 [H, W] (instance ids, 0 = none) and ``boxes``
[N, 4] normalized (x1, y1, x2, y2) ('xyxy', the package convention of
`visionjax.ops.boxes`) with per-box ``box_*`` keys (``box_instance`` among
them). Every op keeps image, mask, instances and boxes in sync (the geometry lives in
`visionjax.data.transforms`; ops here only draw parameters) and draws its
randomness from stateless TF ops seeded by ``seed`` (an integer [2] tensor),
so a pipeline is deterministic given its seed and works both eagerly and
inside ``tf.data``.

Each op carries ``output_size``: ``SAME`` (geometry size unchanged), a fixed
``(h, w)``, or ``None`` (data dependent, e.g. zoom-out). The pipeline uses it
to decide whether the example still has to be fitted to
``config.dataset.image_size``.

Factories that take ``size`` or ``fill`` get ``config.dataset.image_size`` and
the dataset mean pixel from `visionjax.data.augment_config.make_augment` unless the
config passes them (``augment = (("scale_jitter", {"max_scale": 1.5}), ...)``).
"""
from __future__ import annotations

from typing import Callable, Sequence

import tensorflow as tf

from visionjax.data import transforms as T

Example = dict[str, tf.Tensor]
Op = Callable[[tf.Tensor, Example], Example]
SAME = "same"


def _sub_seed(seed: tf.Tensor, k: int) -> tf.Tensor:
  """An independent stateless seed for the k-th random draw of an op."""
  return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), k)


def _uniform(seed, k: int, lo, hi, shape=()) -> tf.Tensor:
  return tf.random.stateless_uniform(shape, _sub_seed(seed, k), lo, hi, tf.float32)


def _coin(seed, k: int, p: float) -> tf.Tensor:
  return _uniform(seed, k, 0.0, 1.0) < p


def _randint(seed, k: int, lo, hi_inclusive) -> tf.Tensor:
  """Uniform int32 in [lo, hi_inclusive] (tensors allowed)."""
  lo, hi = tf.cast(lo, tf.int32), tf.cast(hi_inclusive, tf.int32)
  u = _uniform(seed, k, 0.0, 1.0)
  span = tf.cast(hi - lo + 1, tf.float32)
  return lo + tf.minimum(tf.cast(tf.floor(u * span), tf.int32), hi - lo)


def _with_size(op: Op, output_size) -> Op:
  op.output_size = output_size
  return op


def _size(size: Sequence[int] | None, what: str) -> tuple[int, int]:
  if size is None or len(size) != 2 or min(int(s) for s in size) <= 0:
    raise ValueError(f"{what} needs size=(height, width) with positive ints, got "
                     f"{size!r}; set config.dataset.image_size or pass size")
  return int(size[0]), int(size[1])


def _check_prob(p: float, what: str) -> None:
  if not 0.0 <= p <= 1.0:
    raise ValueError(f"{what}: probability p={p!r} must lie in [0, 1]")


def _check_range(lo: float, hi: float, what: str, min_lo: float = 0.0) -> None:
  if not (min_lo <= lo <= hi):
    raise ValueError(f"{what}: range ({lo!r}, {hi!r}) must satisfy "
                     f"{min_lo} <= low <= high")


# ------------------------------------------------------------------ geometric
def horizontal_flip(p: float = 0.5) -> Op:
  """Mirrors image, mask and boxes left-right with probability ``p``."""
  _check_prob(p, "horizontal_flip")

  def op(seed, ex):
    keys = list(ex)
    return tf.cond(_coin(seed, 0, p), lambda: T.flip_left_right(ex),
                   lambda: {k: ex[k] for k in keys})

  return _with_size(op, SAME)


def random_crop(size: Sequence[int] | None = None, fill=0.0) -> Op:
  """A uniformly placed ``size`` window; smaller images are padded first.

  Padding uses ``fill`` for the image and 255 for the mask, so it is ignored.
  """
  th, tw = _size(size, "random_crop")

  def op(seed, ex):
    h, w = T.hw(ex)
    top = _randint(seed, 0, 0, tf.maximum(h - th, 0))
    left = _randint(seed, 1, 0, tf.maximum(w - tw, 0))
    return T.crop_or_pad(ex, top, left, th, tw, fill=fill)

  return _with_size(op, (th, tw))


def pad_crop(pad: int = 4, fill=0.0) -> Op:
  """CIFAR-style: pad ``pad`` pixels on every side, random crop back."""
  if pad < 0:
    raise ValueError(f"pad_crop: pad={pad!r} must be >= 0")

  def op(seed, ex):
    h, w = T.hw(ex)
    top = _randint(seed, 0, -pad, pad)
    left = _randint(seed, 1, -pad, pad)
    return T.crop_or_pad(ex, top, left, h, w, fill=fill)

  return _with_size(op, SAME)


def random_resized_crop(size: Sequence[int] | None = None,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Op:
  """Inception-style crop (area fraction ``scale``, aspect ``ratio`` = w/h)
  resized to ``size``. Sampling reuses tf.image's bounding-box sampler."""
  th, tw = _size(size, "random_resized_crop")
  _check_range(scale[0], scale[1], "random_resized_crop scale", 1e-6)
  _check_range(ratio[0], ratio[1], "random_resized_crop ratio", 1e-6)

  def op(seed, ex):
    # The sampler takes boxes as [batch, N, 4] normalized yxyx, not the
    # package's xyxy. None are passed (any window qualifies:
    # min_object_covered=0), so there is nothing to convert; boxes passed here
    # would need ``tf.gather(boxes, [1, 0, 3, 2], axis=-1)`` first. ``begin``
    # and ``crop`` come back as (y, x, channel) offsets and sizes.
    begin, crop, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(ex["image"]), tf.zeros([1, 0, 4]), seed=_sub_seed(seed, 0),
        min_object_covered=0.0, aspect_ratio_range=ratio, area_range=scale,
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    ex = T.crop_or_pad(ex, begin[0], begin[1], crop[0], crop[1])
    return T.resize(ex, (th, tw))

  return _with_size(op, (th, tw))


def scale_jitter(size: Sequence[int] | None = None, min_scale: float = 0.5,
                 max_scale: float = 2.0, base: str = "image", fill=0.0) -> Op:
  """Random rescale by s ~ U[min_scale, max_scale], then a random ``size`` crop.

  ``base='image'`` scales the original image (DeepLab's recipe: crops of the
  full-resolution image); ``base='fit'`` scales relative to the image fitted
  inside ``size`` (large-scale jitter for detection). Smaller results are
  padded with ``fill`` / mask 255.
  """
  th, tw = _size(size, "scale_jitter")
  _check_range(min_scale, max_scale, "scale_jitter", 1e-6)
  if base not in ("image", "fit"):
    raise ValueError(f"scale_jitter: base={base!r}; expected 'image' or 'fit'")

  def window(top, n_out, scale, n_in):
    """Input rows [a, b) that the output rows [top, top + n_out) come from."""
    a = tf.clip_by_value(tf.cast(tf.floor(tf.cast(top, tf.float32) / scale), tf.int32), 0, n_in)
    b = tf.clip_by_value(tf.cast(tf.math.ceil(tf.cast(top + n_out, tf.float32) / scale),
                                 tf.int32), a + 1, n_in)
    return a, tf.maximum(b, a + 1)

  def op(seed, ex):
    h, w = T.hw(ex)
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    s = _uniform(seed, 0, min_scale, max_scale)
    if base == "fit":
      s = s * tf.minimum(th / hf, tw / wf)
    nh = tf.maximum(tf.cast(tf.round(hf * s), tf.int32), 1)
    nw = tf.maximum(tf.cast(tf.round(wf * s), tf.int32), 1)
    top = _randint(seed, 1, 0, tf.maximum(nh - th, 0))
    left = _randint(seed, 2, 0, tf.maximum(nw - tw, 0))
    # Same result as resizing the whole image to (nh, nw) and cropping at
    # (top, left), up to a pixel of rounding, at the cost of the crop: only
    # the input window under the crop is resized (a 2x Cityscapes frame
    # would otherwise be a 2048x4096 float image per example).
    sy, sx = tf.cast(nh, tf.float32) / hf, tf.cast(nw, tf.float32) / wf
    y0, y1 = window(top, th, sy, h)
    x0, x1 = window(left, tw, sx, w)
    ex = T.crop_or_pad(ex, y0, x0, y1 - y0, x1 - x0)
    rh = tf.maximum(tf.cast(tf.round(tf.cast(y1 - y0, tf.float32) * sy), tf.int32), 1)
    rw = tf.maximum(tf.cast(tf.round(tf.cast(x1 - x0, tf.float32) * sx), tf.int32), 1)
    ex = T.resize(ex, tf.stack([rh, rw]))
    oy = top - tf.cast(tf.round(tf.cast(y0, tf.float32) * sy), tf.int32)
    ox = left - tf.cast(tf.round(tf.cast(x0, tf.float32) * sx), tf.int32)
    return T.crop_or_pad(ex, oy, ox, th, tw, fill=fill)

  return _with_size(op, (th, tw))


def resize(size: Sequence[int] | None = None) -> Op:
  """Stretches to ``size`` (SSD's final resize); boxes stay normalized."""
  th, tw = _size(size, "resize")

  def op(seed, ex):
    del seed
    return T.resize(ex, (th, tw))

  return _with_size(op, (th, tw))


def _affine_op(sample_linear: Callable, what: str, fill) -> Op:
  def op(seed, ex):
    h, w = T.hw(ex)
    linear, shift = sample_linear(seed, h, w)
    return T.affine(ex, T.centre_affine(h, w, linear, shift), fill=fill)

  op.__name__ = what
  return _with_size(op, SAME)


def rotation(max_degrees: float = 15.0, fill=0.0) -> Op:
  """Rotation about the centre by U[-max, max] degrees (boxes: envelopes)."""
  _check_range(0.0, max_degrees, "rotation max_degrees")
  return _affine_op(lambda s, h, w: (
      T.rotation_matrix(_uniform(s, 0, -max_degrees, max_degrees)), (0.0, 0.0)),
      "rotation", fill)


def shift(max_fraction: float = 0.1, fill=0.0) -> Op:
  """Translation by up to ``max_fraction`` of the height/width."""
  _check_range(0.0, max_fraction, "shift max_fraction")

  def sample(s, h, w):
    dy = _uniform(s, 0, -max_fraction, max_fraction) * tf.cast(h, tf.float32)
    dx = _uniform(s, 1, -max_fraction, max_fraction) * tf.cast(w, tf.float32)
    return tf.eye(2), (tf.round(dy), tf.round(dx))

  return _affine_op(sample, "shift", fill)


def shear(max_degrees: float = 10.0, fill=0.0) -> Op:
  """Horizontal and vertical shear by U[-max, max] degrees each."""
  _check_range(0.0, max_degrees, "shear max_degrees")
  return _affine_op(lambda s, h, w: (T.shear_matrix(
      _uniform(s, 0, -max_degrees, max_degrees),
      _uniform(s, 1, -max_degrees, max_degrees)), (0.0, 0.0)), "shear", fill)


def zoom(max_fraction: float = 0.2, fill=0.0) -> Op:
  """Isotropic zoom about the centre by U[1 - f, 1 + f] (same output size)."""
  _check_range(0.0, max_fraction, "zoom max_fraction")
  if max_fraction >= 1:
    raise ValueError(f"zoom: max_fraction={max_fraction!r} must be < 1")
  return _affine_op(lambda s, h, w: (T.zoom_matrix(
      _uniform(s, 0, 1 - max_fraction, 1 + max_fraction)), (0.0, 0.0)), "zoom", fill)


# ------------------------------------------------------------ detection (SSD)
def zoom_out(max_scale: float = 4.0, p: float = 0.5, fill=(123.0, 117.0, 104.0)) -> Op:
  """SSD "expand": the image on a canvas r x its size, r ~ U[1, max_scale],
  at a random place, with probability ``p``; the canvas is ``fill`` (the mean
  pixel) and mask 255."""
  _check_range(1.0, max_scale, "zoom_out max_scale", 1.0)
  _check_prob(p, "zoom_out")

  def op(seed, ex):
    h, w = T.hw(ex)
    r = tf.where(_coin(seed, 0, p), _uniform(seed, 1, 1.0, max_scale), 1.0)
    ch = tf.cast(tf.round(tf.cast(h, tf.float32) * r), tf.int32)
    cw = tf.cast(tf.round(tf.cast(w, tf.float32) * r), tf.int32)
    top = _randint(seed, 2, 0, ch - h)
    left = _randint(seed, 3, 0, cw - w)
    return T.crop_or_pad(ex, -top, -left, ch, cw, fill=fill)

  return _with_size(op, None)


def iou_random_crop(min_ious: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
                    min_scale: float = 0.3, max_aspect: float = 2.0,
                    max_trials: int = 50, iou_of: str = "any") -> Op:
  """SSD's IoU-constrained random crop (Liu et al. 2016, Sec. 2.2).

  A mode is drawn uniformly from {no crop, any crop, min IoU 0.1 ... 0.9}.
  Up to ``max_trials`` candidate crops (side fractions U[min_scale, 1], aspect
  h/w within [1/max_aspect, max_aspect]) are drawn at once; the first whose
  IoU with some box (``iou_of='any'``, the original Caffe SSD's
  SatisfySampleConstraint) or with every box (``'all'``, mmdetection's
  MinIoURandomCrop) is >= the mode's minimum, and that contains at least one
  box centre, is used. Boxes whose centre falls outside are dropped, the rest
  clipped. If no candidate qualifies the example is left uncropped (the
  reference implementations loop until one does; a bounded number of trials
  keeps this a fixed-cost graph op).

  Written by hand: tf.image's bounding-box sampler constrains the covered
  fraction of a box, not the IoU of the crop with every box.
  """
  _check_range(min_scale, 1.0, "iou_random_crop min_scale", 1e-6)
  if max_aspect < 1:
    raise ValueError(f"iou_random_crop: max_aspect={max_aspect!r} must be >= 1")
  if iou_of not in ("any", "all"):
    raise ValueError(f"iou_random_crop: iou_of={iou_of!r}; expected 'any' or 'all'")
  thresholds = tf.constant([2.0, -1.0] + [float(t) for t in min_ious], tf.float32)

  def op(seed, ex):
    if "boxes" not in ex:
      raise ValueError("iou_random_crop needs 'boxes' in the example; keys are "
                       f"{sorted(ex)}")
    h, w = T.hw(ex)
    min_iou = thresholds[_randint(seed, 0, 0, len(min_ious) + 1)]
    found, crop, keep = sample_iou_crop(_sub_seed(seed, 1), T.pixel_boxes(ex), h, w,
                                        min_iou, min_scale, max_aspect, max_trials,
                                        iou_of)
    c = tf.where(found, crop, tf.stack([0, 0, w, h]))  # xyxy
    keep = tf.where(found, keep, tf.ones_like(keep))
    return T.crop_or_pad(ex, c[1], c[0], c[3] - c[1], c[2] - c[0], box_keep=keep)

  return _with_size(op, None)


def sample_iou_crop(seed, boxes_px: tf.Tensor, h, w, min_iou, min_scale: float,
                    max_aspect: float, max_trials: int, iou_of: str = "any"
                    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """One SSD crop search: ``(found, crop, keep)``.

  ``boxes_px`` [N, 4] are xyxy pixel edges (`transforms.pixel_boxes`).
  ``crop`` is int32 [4] xyxy (left, top, right, bottom) in pixel edges of the
  first of ``max_trials`` candidates whose IoU with ``iou_of`` ('any'/'all')
  box is >= ``min_iou`` and that contains at least one box centre; ``keep``
  bool [N] marks the boxes whose centre lies inside it. ``found`` is False
  when no candidate qualifies.
  """
  hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
  n = max_trials
  ch = tf.floor(_uniform(seed, 1, min_scale, 1.0, [n]) * hf)
  cw = tf.floor(_uniform(seed, 2, min_scale, 1.0, [n]) * wf)
  top = tf.floor(_uniform(seed, 3, 0.0, 1.0, [n]) * (hf - ch))
  left = tf.floor(_uniform(seed, 4, 0.0, 1.0, [n]) * (wf - cw))
  aspect = ch / tf.maximum(cw, 1.0)
  crops = tf.stack([left, top, left + cw, top + ch], 1)  # xyxy, like boxes_px
  iou = T.box_iou(crops, boxes_px)  # [n, N]
  cx = (boxes_px[:, 0] + boxes_px[:, 2]) / 2
  cy = (boxes_px[:, 1] + boxes_px[:, 3]) / 2
  inside = ((cx[None] > crops[:, :1]) & (cx[None] < crops[:, 2:3]) &
            (cy[None] > crops[:, 1:2]) & (cy[None] < crops[:, 3:4]))  # [n, N]
  ok = ((aspect >= 1.0 / max_aspect) & (aspect <= max_aspect) &
        (ch >= 1) & (cw >= 1) &
        (tf.reduce_any if iou_of == "any" else tf.reduce_all)(iou >= min_iou, axis=1)
        & tf.reduce_any(inside, axis=1))
  i = tf.minimum(tf.reduce_min(tf.where(ok, tf.range(n), n)), n - 1)  # first
  return tf.reduce_any(ok), tf.cast(crops[i], tf.int32), inside[i]


# ---------------------------------------------------------------- photometric
def _as_float(ex: Example) -> tf.Tensor:
  return tf.cast(ex["image"], tf.float32) / 255.0


def _from_float(ex: Example, img: tf.Tensor) -> Example:
  return {**ex, "image": T._to_uint8(tf.clip_by_value(img, 0.0, 1.0) * 255.0)}


def color_jitter(brightness: float = 0.2, contrast: float = 0.2,
                 saturation: float = 0.2, hue: float = 0.05) -> Op:
  """Random brightness/contrast/saturation/hue (tf.image); geometry untouched."""
  for name, v in (("brightness", brightness), ("contrast", contrast),
                  ("saturation", saturation)):
    _check_range(0.0, v, f"color_jitter {name}")
  _check_range(0.0, hue, "color_jitter hue")
  if hue > 0.5:
    raise ValueError(f"color_jitter: hue={hue!r} must be <= 0.5")

  def op(seed, ex):
    img = _as_float(ex)
    s = [_sub_seed(seed, i) for i in range(4)]
    if brightness:
      img = tf.image.stateless_random_brightness(img, brightness, s[0])
    if contrast:
      img = tf.image.stateless_random_contrast(img, 1 - contrast, 1 + contrast, s[1])
    if saturation:
      img = tf.image.stateless_random_saturation(img, 1 - saturation, 1 + saturation, s[2])
    if hue:
      img = tf.image.stateless_random_hue(img, hue, s[3])
    return _from_float(ex, img)

  return _with_size(op, SAME)


def grayscale(p: float = 0.2) -> Op:
  """Converts to grey (replicated over 3 channels) with probability ``p``."""
  _check_prob(p, "grayscale")

  def op(seed, ex):
    img = tf.cast(ex["image"], tf.float32)
    grey = tf.tile(tf.image.rgb_to_grayscale(img), [1, 1, 3])
    return {**ex, "image": T._to_uint8(tf.where(_coin(seed, 0, p), grey, img))}

  return _with_size(op, SAME)


def photometric_distortion(brightness_delta: float = 32.0,
                           contrast: tuple[float, float] = (0.5, 1.5),
                           saturation: tuple[float, float] = (0.5, 1.5),
                           hue_delta_degrees: float = 18.0,
                           p: float = 0.5) -> Op:
  """SSD/mmdet PhotoMetricDistortion: each of brightness (+-delta on 0..255),
  contrast, saturation and hue is applied with probability ``p``; contrast
  goes first or last (coin flip). Values are clipped to [0, 255] after every
  step, as the reference implementations do on uint8 images. Contrast and
  saturation are tf.image's (about the mean / in HSV); the HSV round trips
  only run when drawn (they dominate the cost)."""
  _check_prob(p, "photometric_distortion")
  _check_range(*contrast, "photometric_distortion contrast")
  _check_range(*saturation, "photometric_distortion saturation")
  if not 0 <= hue_delta_degrees <= 180:
    raise ValueError(f"photometric_distortion: hue_delta_degrees="
                     f"{hue_delta_degrees!r} must lie in [0, 180]")
  clip = lambda x: tf.clip_by_value(x, 0.0, 1.0)

  def maybe(apply, fn, img):
    return tf.cond(apply, lambda: clip(fn(img)), lambda: img)

  def op(seed, ex):
    on = [_coin(seed, k, p) for k in range(4)]
    delta = _uniform(seed, 10, -brightness_delta / 255.0, brightness_delta / 255.0)
    c = _uniform(seed, 11, contrast[0], contrast[1])
    s = _uniform(seed, 12, saturation[0], saturation[1])
    hue = _uniform(seed, 13, -hue_delta_degrees / 360.0, hue_delta_degrees / 360.0)
    contrast_first = _coin(seed, 4, 0.5)
    img = clip(_as_float(ex) + tf.where(on[0], delta, 0.0))
    img = maybe(on[1] & contrast_first, lambda x: tf.image.adjust_contrast(x, c), img)
    img = maybe(on[2], lambda x: tf.image.adjust_saturation(x, s), img)
    img = maybe(on[3], lambda x: tf.image.adjust_hue(x, hue), img)
    img = maybe(on[1] & ~contrast_first, lambda x: tf.image.adjust_contrast(x, c), img)
    return _from_float(ex, img)

  return _with_size(op, SAME)


def ssd_photometric(**kwargs) -> Op:
  """`photometric_distortion` with the settings of the original SSD (Caffe):
  brightness +-32, contrast and saturation [0.5, 1.5], hue +-18 deg, each
  with probability 0.5; no channel swap."""
  return photometric_distortion(**kwargs)


# ------------------------------------------------------------------ chaining
def chain(ops: list[Op]) -> Op:
  """Applies ``ops`` in order, each with its own sub-seed.

  ``output_size`` of the chain: the size after the last op that changes it.
  """

  def op(seed: tf.Tensor, ex: Example) -> Example:
    for i, o in enumerate(ops):
      ex = o(_sub_seed(seed, i + 1000), ex)
    return ex

  size = SAME
  for o in ops:
    s = getattr(o, "output_size", None)
    if s != SAME:
      size = s
  return _with_size(op, size)


# Name -> factory, used by configs (`config.dataset.augment = ('color_jitter',)`).
OPS: dict[str, Callable[..., Op]] = {
    "horizontal_flip": horizontal_flip,
    "random_crop": random_crop,
    "pad_crop": pad_crop,
    "random_resized_crop": random_resized_crop,
    "scale_jitter": scale_jitter,
    "resize": resize,
    "rotation": rotation,
    "shift": shift,
    "shear": shear,
    "zoom": zoom,
    "zoom_out": zoom_out,
    "iou_random_crop": iou_random_crop,
    "color_jitter": color_jitter,
    "grayscale": grayscale,
    "photometric_distortion": photometric_distortion,
    "ssd_photometric": ssd_photometric,
}
