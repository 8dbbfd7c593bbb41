"""Sobel and Canny edges, hysteresis and hole filling, in JAX.

Conventions are scikit-image's, so results can be compared pixel for pixel:

* ``sobel``: ``skimage.filters.sobel``. Per axis, the central difference
  ``x[i + 1] - x[i - 1]`` smoothed by ``[1, 2, 1] / 4`` across; the
  magnitude is ``sqrt((g_rows^2 + g_cols^2) / 2)``; boundary 'reflect';
  integer images are scaled to [0, 1] first.
* ``canny``: ``skimage.feature.canny``. Gaussian smoothing (``sigma``,
  truncated at 4 sigma); with ``mode='constant'`` (the default) the result is
  divided by the smoothed all-ones image plus float eps, so the image border
  is not darkened. Gradients by ``scipy.ndimage.sobel`` (unnormalized
  ``[-1, 0, 1]`` x ``[1, 2, 1]``, 'reflect'), magnitude ``sqrt(gi^2 + gj^2)``.
  Non-maximum suppression compares each pixel with its two neighbours along
  the gradient, linearly interpolated between the two nearest of the
  8 neighbours (scikit-image's bilinear rule, ties kept: ``<=``); the
  one-pixel image border is never an edge. Pixels below ``low_threshold``
  are dropped; an 8-connected group of the rest is kept when it holds a
  pixel >= ``high_threshold``. Default thresholds are 0.1 and 0.2 (of the
  [0, 1] intensity scale); given thresholds of an integer image are divided
  by the dtype's maximum.

Hysteresis and hole filling are morphological reconstructions by dilation:
a seed grows inside an allowed mask one 3 x 3 (or cross) step per
iteration of a ``lax.while_loop`` until it stops changing, which is the
set of allowed pixels connected to the seed. Functions take [..., H, W]
(leading axes: batch).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from visionjax.classical import filters


def _as_float(images):
  images = jnp.asarray(images)
  if jnp.issubdtype(images.dtype, jnp.integer):
    return images.astype(jnp.float32) / jnp.iinfo(images.dtype).max
  return images.astype(jnp.float32)


def _check_2d(images, name: str = "images"):
  if jnp.ndim(images) < 2:
    raise ValueError(f"{name} have shape {tuple(jnp.shape(images))}; expected [..., H, W]")


def sobel(images, *, mode: str = "reflect"):
  """Sobel edge magnitude: float32 [..., H, W] (`skimage.filters.sobel`)."""
  _check_2d(images)
  x = _as_float(images)
  smooth = np.array([1.0, 2.0, 1.0]) / 4
  diff = np.array([-1.0, 0.0, 1.0])
  g_rows = filters.separable(x, (diff, smooth), mode=mode)
  g_cols = filters.separable(x, (smooth, diff), mode=mode)
  return jnp.sqrt((g_rows * g_rows + g_cols * g_cols) / 2)


def _shift(x, di: int, dj: int, fill=0):
  """``out[..., i, j] = x[..., i + di, j + dj]`` (``fill`` outside)."""
  pad = [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)]
  p = jnp.pad(x, pad, constant_values=fill)
  h, w = x.shape[-2:]
  return p[..., 1 + di:1 + di + h, 1 + dj:1 + dj + w]


_EIGHT = [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1) if (di, dj) != (0, 0)]
_FOUR = [(-1, 0), (1, 0), (0, -1), (0, 1)]


def reconstruct(seed, allowed, *, connectivity: int = 8):
  """The pixels of ``allowed`` connected to ``seed`` (both bool [..., H, W])
  through ``allowed`` (8- or 4-connectivity): a binary reconstruction by
  dilation."""
  if connectivity not in (4, 8):
    raise ValueError(f"connectivity={connectivity}; expected 4 or 8")
  offsets = _EIGHT if connectivity == 8 else _FOUR
  allowed = jnp.asarray(allowed, bool)
  seed = jnp.asarray(seed, bool) & allowed

  def grow(x):
    out = x
    for di, dj in offsets:
      out = out | _shift(x, di, dj, False)
    return out & allowed

  def body(carry):
    x, _ = carry
    y = grow(x)
    return y, jnp.any(y != x)

  out, _ = jax.lax.while_loop(lambda c: c[1], body, (seed, jnp.asarray(True)))
  return out


def fill_holes(masks):
  """``masks`` bool [..., H, W] with every hole filled: background pixels not
  4-connected to the image border through background become foreground
  (``scipy.ndimage.binary_fill_holes`` with its default cross structure)."""
  _check_2d(masks, "masks")
  masks = jnp.asarray(masks, bool)
  h, w = masks.shape[-2:]
  border = jnp.zeros((h, w), bool).at[0].set(True).at[-1].set(True)
  border = border.at[:, 0].set(True).at[:, -1].set(True)
  outside = reconstruct(jnp.broadcast_to(border, masks.shape) & ~masks, ~masks,
                        connectivity=4)
  return ~outside


def _nonmax(gi, gj, mag, low):
  """Scikit-image's bilinear non-maximum suppression (border excluded) with
  the low threshold: the magnitude where kept, else 0."""
  m = mag
  nb = lambda di, dj: _shift(mag, di, dj)
  ai, aj = jnp.abs(gi), jnp.abs(gj)
  up, right = gi > 0, gj > 0
  same_sign = (up & right) | (~up & ~right)  # else opposite signs
  # Same signs: along rows when |gi| > |gj|, else along columns.
  s_rows = ai > aj
  s_w = jnp.where(s_rows, aj / ai, ai / aj)
  s11 = jnp.where(s_rows, nb(1, 0), nb(0, 1))
  s21 = jnp.where(s_rows, nb(-1, 0), nb(0, -1))
  s12, s22 = nb(1, 1), nb(-1, -1)
  # Opposite signs: along columns when |gi| < |gj|, else along rows.
  o_cols = ai < aj
  o_w = jnp.where(o_cols, ai / aj, aj / ai)
  o11 = jnp.where(o_cols, nb(0, 1), nb(-1, 0))
  o21 = jnp.where(o_cols, nb(0, -1), nb(1, 0))
  o12, o22 = nb(-1, 1), nb(1, -1)
  w = jnp.where(same_sign, s_w, o_w)
  n11, n12 = jnp.where(same_sign, s11, o11), jnp.where(same_sign, s12, o12)
  n21, n22 = jnp.where(same_sign, s21, o21), jnp.where(same_sign, s22, o22)
  keep = ((n12 * w + n11 * (1 - w)) <= m) & ((n22 * w + n21 * (1 - w)) <= m)
  h, wd = mag.shape[-2:]
  inner = jnp.zeros((h, wd), bool).at[1:-1, 1:-1].set(True)
  keep = keep & inner & (m >= low)
  return jnp.where(keep, m, 0.0)


def canny(images, sigma: float = 1.0, low_threshold: float | None = None,
          high_threshold: float | None = None, *, mode: str = "constant", cval: float = 0.0):
  """Canny edges (`skimage.feature.canny`): bool [..., H, W].

  Args:
    images: [..., H, W] grayscale; integer images are scaled to [0, 1].
    sigma: the Gaussian smoothing's standard deviation (static).
    low_threshold, high_threshold: hysteresis thresholds on the gradient
      magnitude (default 0.1 and 0.2; given values of an integer image are
      divided by its dtype's maximum, as scikit-image does).
    mode, cval: the smoothing's boundary (`visionjax.classical.filters`).
  """
  _check_2d(images)
  images = jnp.asarray(images)
  scale = float(jnp.iinfo(images.dtype).max) if jnp.issubdtype(images.dtype,
                                                                jnp.integer) else 1.0
  low = 0.1 if low_threshold is None else low_threshold / scale
  high = 0.2 if high_threshold is None else high_threshold / scale
  if high < low:
    raise ValueError(f"high_threshold={high_threshold} is below low_threshold={low_threshold}")
  if low == 0:
    low = 1e-14  # so that a zero gradient is never an edge (as scikit-image)
  x = _as_float(images)
  smoothed = filters.gaussian_filter(x, sigma, mode=mode, cval=cval)
  if mode == "constant":
    ones = jnp.ones(x.shape[-2:], jnp.float32)
    bleed = filters.gaussian_filter(ones, sigma, mode=mode, cval=0.0)
    smoothed = smoothed / (bleed + jnp.finfo(jnp.float32).eps)
  diff, smooth = np.array([-1.0, 0.0, 1.0]), np.array([1.0, 2.0, 1.0])
  gi = filters.separable(smoothed, (diff, smooth))
  gj = filters.separable(smoothed, (smooth, diff))
  mag = jnp.sqrt(gi * gi + gj * gj)
  kept = _nonmax(gi, gj, mag, jnp.float32(low))
  low_mask = kept > 0
  high_mask = low_mask & (kept >= jnp.float32(high))
  return reconstruct(high_mask, low_mask, connectivity=8)
