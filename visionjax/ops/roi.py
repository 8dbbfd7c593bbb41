"""RoIAlign (He et al. 2017) and its FPN multi-scale form, static shapes.

Coordinate convention: R-CNN ops work in **absolute pixel xyxy** of the
network input image (as torchvision does), not the package's normalized
boxes; convert at the edge with ``ops.denormalize_boxes``. ``spatial_scale``
maps image pixels to feature cells (1/stride). Features are NHWC.

Sampling (torchvision's ``roi_align``, reproduced): with
``o = 0.5 if aligned else 0`` the box becomes ``x1·s - o .. x2·s - o`` on the
feature grid (``aligned=False``, the legacy Detectron convention, also floors
its width/height at 1). Each of the ``PH × PW`` bins averages a
``gh × gw`` grid of bilinear samples at the sub-bin centres, where
``g = sampling_ratio`` if > 0, else ``ceil(roi_size / pooled_size)`` per RoI
(adaptive). A sample is 0 if ``y < -1``, ``y > H``, ``x < -1`` or ``x > W``;
otherwise coordinates below 0 are clamped to 0 and those at or beyond the
last row/column use that row/column (no interpolation past the border).

Adaptive sampling has a value-dependent grid; with static shapes the grid is
padded to ``max_sampling_ratio`` samples per bin and axis (default: enough
for any RoI inside the feature map, ``ceil(H / PH)``) and masked, so results
equal torchvision's whenever ``ceil(roi_size / pooled_size)`` is at most that
cap; larger RoIs are sampled with the capped grid (documented difference).

Implementation: bilinear weights are separable, so each RoI gathers the
``(2·PH·g) × (2·PW·g)`` neighbouring cells once and contracts them with the
row and column weights (an einsum). Gradients with respect to the features
are what autodiff gives that gather (a scatter-add), equal to torchvision's
backward; boxes get no gradient (``stop_gradient``), as in torchvision.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp

IntPair = Union[int, Tuple[int, int]]


def _pair(v: IntPair, name: str) -> Tuple[int, int]:
  p = (v, v) if isinstance(v, int) else tuple(v)
  if len(p) != 2 or not all(isinstance(i, int) and i > 0 for i in p):
    raise ValueError(f"{name}={v!r}; expected a positive int or a pair of them")
  return p


def _axis_weights(start, size, pooled: int, grid, max_grid: int, extent):
  """Sample indices and weights along one axis for every RoI.

  Args: start/size [R] RoI start and size on the feature grid; grid [R] int
  samples per bin (<= max_grid); extent [R] the feature map's size (H or W).
  Returns ``idx`` int32 [R, pooled, 2·max_grid] (low/high neighbours of each
  sample) and ``w`` [R, pooled, 2·max_grid] (bilinear weight, 0 for masked or
  out-of-range samples).
  """
  dtype = start.dtype
  bin_size = size / pooled
  g = jnp.maximum(grid, 1).astype(dtype)
  p = jnp.arange(pooled, dtype=dtype)
  i = jnp.arange(max_grid, dtype=dtype)
  # [R, pooled, max_grid] sample positions at the sub-bin centres.
  pos = (start[:, None, None] + p[None, :, None] * bin_size[:, None, None] +
         (i[None, None, :] + 0.5) * bin_size[:, None, None] / g[:, None, None])
  used = jnp.arange(max_grid)[None, None, :] < grid[:, None, None]
  ext = extent.astype(dtype)[:, None, None]
  inside = (pos >= -1.0) & (pos <= ext)
  pos = jnp.maximum(pos, 0.0)
  low = jnp.floor(pos).astype(jnp.int32)
  last = extent.astype(jnp.int32)[:, None, None] - 1
  at_end = low >= last
  low = jnp.where(at_end, last, low)
  high = jnp.where(at_end, last, low + 1)
  pos = jnp.where(at_end, low.astype(dtype), pos)
  frac = pos - low.astype(dtype)
  keep = (used & inside).astype(dtype)
  idx = jnp.concatenate([low, high], axis=-1)
  w = jnp.concatenate([(1.0 - frac) * keep, frac * keep], axis=-1)
  return idx, w


def _roi_align_flat(flat, boxes, level_hw, level_scale, level_base, output_size,
                    sampling_ratio: int, aligned: bool, max_grid: Tuple[int, int]):
  """RoIAlign of one image's RoIs over a flattened pyramid.

  flat: [N, C] every level's cells, row-major, concatenated; boxes [R, 4]
  pixel xyxy; level_hw int [R, 2], level_scale [R], level_base int [R] (the
  RoI's level: its size, spatial scale and offset in ``flat``).
  Returns [R, PH, PW, C].
  """
  ph, pw = output_size
  # Coordinates and weights in at least float32 (bfloat16 would misplace
  # samples on large maps); the contraction runs in the features' dtype.
  dtype = jnp.promote_types(flat.dtype, jnp.float32)
  boxes = jax.lax.stop_gradient(boxes.astype(dtype))
  off = 0.5 if aligned else 0.0
  s = level_scale.astype(dtype)
  x1 = boxes[:, 0] * s - off
  y1 = boxes[:, 1] * s - off
  rw = boxes[:, 2] * s - off - x1
  rh = boxes[:, 3] * s - off - y1
  if not aligned:  # legacy: force malformed RoIs to 1×1
    rw = jnp.maximum(rw, 1.0)
    rh = jnp.maximum(rh, 1.0)
  if sampling_ratio > 0:
    gy = jnp.full(rh.shape, sampling_ratio, jnp.int32)
    gx = gy
  else:
    gy = jnp.minimum(jnp.ceil(rh / ph), max_grid[0]).astype(jnp.int32)
    gx = jnp.minimum(jnp.ceil(rw / pw), max_grid[1]).astype(jnp.int32)
  yi, wy = _axis_weights(y1, rh, ph, gy, max_grid[0], level_hw[:, 0])
  xi, wx = _axis_weights(x1, rw, pw, gx, max_grid[1], level_hw[:, 1])
  r = boxes.shape[0]
  rows = yi.reshape(r, -1)
  cols = xi.reshape(r, -1)
  cells = (level_base[:, None, None] + rows[:, :, None] * level_hw[:, 1, None, None] +
           cols[:, None, :])                                   # [R, Sy, Sx]
  vals = flat[cells]                                           # [R, Sy, Sx, C]
  vals = vals.reshape(r, ph, yi.shape[-1], pw, xi.shape[-1], -1)
  count = jnp.maximum(gy * gx, 1).astype(dtype)
  wy = (wy / count[:, None, None]).astype(flat.dtype)
  out = jnp.einsum("rpa,rqb,rpaqbc->rpqc", wy, wx.astype(flat.dtype), vals,
                   precision=jax.lax.Precision.HIGHEST)
  return out


def _check_inputs(fn, features, boxes, valid):
  boxes = jnp.asarray(boxes)
  if boxes.ndim != 3 or boxes.shape[-1] != 4:
    raise ValueError(f"{fn}: boxes has shape {boxes.shape}; expected [B, R, 4] pixel xyxy")
  for i, f in enumerate(features):
    if f.ndim != 4 or f.shape[0] != boxes.shape[0]:
      raise ValueError(f"{fn}: features[{i}] has shape {f.shape}; expected [B, H, W, C] with "
                       f"B = {boxes.shape[0]} (boxes' batch)")
    if f.shape[-1] != features[0].shape[-1]:
      raise ValueError(f"{fn}: features[{i}] has {f.shape[-1]} channels; expected "
                       f"{features[0].shape[-1]} like features[0]")
  if valid is not None:
    valid = jnp.asarray(valid, bool)
    if valid.shape != boxes.shape[:2]:
      raise ValueError(f"{fn}: valid has shape {valid.shape}; expected {boxes.shape[:2]}")
    # Padding rows may hold NaN; replace them so nothing non-finite reaches
    # the weights (NaN · 0 would poison the feature gradient).
    boxes = jnp.where(valid[..., None], boxes, 0.0)
  return boxes, valid


def _grid_cap(sampling_ratio, max_sampling_ratio, sizes, output_size):
  if not isinstance(sampling_ratio, int):
    raise ValueError(f"sampling_ratio={sampling_ratio!r}; expected an int (<= 0: adaptive)")
  if sampling_ratio > 0:
    return (sampling_ratio, sampling_ratio)
  if max_sampling_ratio is not None:
    return _pair(max_sampling_ratio, "max_sampling_ratio")
  h = max(s[0] for s in sizes)
  w = max(s[1] for s in sizes)
  return (max(1, math.ceil(h / output_size[0])), max(1, math.ceil(w / output_size[1])))


def roi_align(features, boxes, output_size: IntPair, *, spatial_scale: float = 1.0,
              sampling_ratio: int = -1, aligned: bool = False, valid=None,
              max_sampling_ratio: Optional[IntPair] = None):
  """RoIAlign of a batch: ``torchvision.ops.roi_align`` for NHWC features.

  Args:
    features: [B, H, W, C].
    boxes: [B, R, 4] pixel xyxy in the input image (R RoIs per image, padded).
    output_size: (PH, PW) or an int.
    spatial_scale: feature cells per image pixel (1 / stride).
    sampling_ratio: samples per bin and axis; <= 0: adaptive
      ``ceil(roi_size / output_size)`` per RoI, padded to
      ``max_sampling_ratio`` (see the module docstring).
    aligned: True: half-pixel offset (pixel centres at +0.5, Detectron2);
      False: the legacy convention (torchvision's default).
    valid: optional bool [B, R]; rows where it is False come out as zeros.
    max_sampling_ratio: static cap for adaptive sampling (default
      ``ceil(H / PH)``, ``ceil(W / PW)``: exact for RoIs inside the map).

  Returns: [B, R, PH, PW, C].
  """
  return multiscale_roi_align([features], boxes, output_size, scales=[spatial_scale],
                              sampling_ratio=sampling_ratio, aligned=aligned, valid=valid,
                              max_sampling_ratio=max_sampling_ratio)


def infer_scales(feature_sizes: Sequence[Tuple[int, int]], image_size: Tuple[int, int]):
  """Spatial scales of pyramid levels as torchvision's ``MultiScaleRoIAlign``
  infers them: ``2 ** round(log2(H_l / H_image))`` (the height ratio rounded to
  a power of two). ``image_size`` is the (padded) batch's (H, W)."""
  return [2.0 ** round(math.log2(h / image_size[0])) for h, _ in feature_sizes]


def fpn_levels(boxes, k_min: int, k_max: int, *, canonical_scale: float = 224.0,
               canonical_level: int = 4, eps: float = 1e-6):
  """FPN level index (0 = level k_min) of pixel xyxy ``boxes`` [..., 4].

  ``k = clip(floor(canonical_level + log2(sqrt(area) / canonical_scale) +
  eps), k_min, k_max) - k_min`` (Lin et al. 2017, eq. 1; torchvision's
  ``LevelMapper``). Zero-area boxes go to level k_min.
  """
  boxes = jnp.asarray(boxes)
  area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
  s = jnp.sqrt(area)
  k = jnp.floor(canonical_level + jnp.log2(s / canonical_scale) + jnp.asarray(eps, s.dtype))
  k = jnp.clip(jnp.nan_to_num(k, nan=k_min), k_min, k_max)
  return (k - k_min).astype(jnp.int32)


def multiscale_roi_align(features: Sequence, boxes, output_size: IntPair, *,
                         scales: Sequence[float], sampling_ratio: int = 2,
                         aligned: bool = False, canonical_scale: float = 224.0,
                         canonical_level: int = 4, eps: float = 1e-6, valid=None,
                         max_sampling_ratio: Optional[IntPair] = None):
  """RoIAlign over a feature pyramid, each RoI pooled from its FPN level.

  ``torchvision.ops.MultiScaleRoIAlign`` semantics: levels k_min..k_max
  from the scales (``k = -log2(scale)``, so scales must be powers of two),
  each RoI's level by :func:`fpn_levels`, then :func:`roi_align` on that
  level (``aligned=False`` by default, as torchvision). One level: plain
  RoIAlign at ``scales[0]``, no level assignment.

  All levels are flattened into one [N, C] array per image, so every RoI is a
  single gather whatever its level (no per-level loop over all RoIs).

  Args:
    features: sequence of [B, H_l, W_l, C], finest first.
    boxes: [B, R, 4] pixel xyxy; valid: optional bool [B, R].
    scales: static spatial scale of each level (e.g. :func:`infer_scales`).
    sampling_ratio, aligned, max_sampling_ratio: as :func:`roi_align`.

  Returns: [B, R, PH, PW, C].
  """
  features = [jnp.asarray(f) for f in features]
  if not features or len(scales) != len(features):
    raise ValueError(f"multiscale_roi_align: got {len(features)} feature maps and "
                     f"{len(scales)} scales; expected one scale per map (at least one)")
  output_size = _pair(output_size, "output_size")
  boxes, valid = _check_inputs("multiscale_roi_align", features, boxes, valid)
  sizes = [f.shape[1:3] for f in features]
  grid = _grid_cap(sampling_ratio, max_sampling_ratio, sizes, output_size)
  dtype = jnp.promote_types(features[0].dtype, jnp.float32)
  flat = jnp.concatenate([f.reshape(f.shape[0], -1, f.shape[-1]) for f in features], axis=1)
  hw = jnp.asarray(sizes, jnp.int32)
  base = jnp.asarray([0] + [h * w for h, w in sizes[:-1]], jnp.int32).cumsum()
  sc = jnp.asarray(scales, dtype)
  if len(features) == 1:
    level = jnp.zeros(boxes.shape[:2], jnp.int32)
  else:
    ks = []
    for s in scales:
      k = -math.log2(s) if s > 0 else math.nan
      if not k == round(k):
        raise ValueError(f"multiscale_roi_align: scale {s!r} is not a power of two; FPN "
                         "level assignment needs scales 2**-k")
      ks.append(int(round(k)))
    level = fpn_levels(boxes.astype(dtype), ks[0], ks[-1], canonical_scale=canonical_scale,
                       canonical_level=canonical_level, eps=eps)

  def one(flat_b, boxes_b, level_b):
    return _roi_align_flat(flat_b, boxes_b, hw[level_b], sc[level_b], base[level_b],
                           output_size, sampling_ratio, aligned, grid)

  out = jax.vmap(one)(flat, boxes, level)
  if valid is not None:
    out = jnp.where(valid[:, :, None, None, None], out, 0.0)
  return out


def roi_align_indexed(maps, boxes, index, output_size: IntPair, *, spatial_scale: float = 1.0,
                      sampling_ratio: int = -1, aligned: bool = False, valid=None,
                      max_sampling_ratio: Optional[IntPair] = None):
  """RoIAlign of every box from the map its ``index`` names.

  torchvision's ``roi_align`` with rois ``(index, x1, y1, x2, y2)`` (the
  first column choosing the map), per image: Mask R-CNN's
  ``project_masks_on_boxes`` crops each positive RoI from its matched
  ground-truth mask this way. Only the chosen map is gathered, so the cost
  does not grow with N.

  Args:
    maps: [B, N, H, W, C] (e.g. N padded ground-truth masks per image).
    boxes: [B, R, 4] pixel xyxy; index: int [B, R] in [0, N).
    output_size, spatial_scale, sampling_ratio, aligned, valid,
    max_sampling_ratio: as :func:`roi_align` (default ``sampling_ratio=-1``,
      ``aligned=False``: torchvision's defaults, which ``project_masks_on_boxes``
      uses).

  Returns: [B, R, PH, PW, C].
  """
  maps = jnp.asarray(maps)
  if maps.ndim != 5:
    raise ValueError(f"roi_align_indexed: maps has shape {maps.shape}; expected [B, N, H, W, C]")
  b, n, h, w, c = maps.shape
  boxes, valid = _check_inputs("roi_align_indexed", [maps[:, 0]], boxes, valid)
  index = jnp.asarray(index)
  if index.shape != boxes.shape[:2] or not jnp.issubdtype(index.dtype, jnp.integer):
    raise ValueError(f"roi_align_indexed: index has shape {index.shape} and dtype {index.dtype};"
                     f" expected integers of shape {boxes.shape[:2]}")
  output_size = _pair(output_size, "output_size")
  grid = _grid_cap(sampling_ratio, max_sampling_ratio, [(h, w)], output_size)
  flat = maps.reshape(b, n * h * w, c)
  r = boxes.shape[1]
  hw = jnp.broadcast_to(jnp.asarray([h, w], jnp.int32), (r, 2))
  dtype = jnp.promote_types(maps.dtype, jnp.float32)
  scale = jnp.full((r,), spatial_scale, dtype)

  def one(flat_b, boxes_b, index_b):
    base = jnp.clip(index_b, 0, n - 1).astype(jnp.int32) * (h * w)
    return _roi_align_flat(flat_b, boxes_b, hw, scale, base, output_size, sampling_ratio,
                           aligned, grid)

  out = jax.vmap(one)(flat, boxes, index)
  if valid is not None:
    out = jnp.where(valid[:, :, None, None, None], out, 0.0)
  return out
