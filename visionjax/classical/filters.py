"""Separable image filters with scipy.ndimage's boundary modes, in JAX.

The classical baselines (`visionjax.classical`) and the SSIM metric
(`visionjax.metrics.image_quality`) filter with the kernels and boundary
rules that scikit-image uses through ``scipy.ndimage``, so their results can
be compared with scikit-image's value for value:

* ``gaussian_kernel(sigma, truncate)``: ``exp(-x^2 / (2 sigma^2))`` sampled at
  the integers ``|x| <= int(truncate * sigma + 0.5)`` and normalized to sum 1
  (scipy's ``gaussian_filter1d``).
* ``mode``: scipy's names. ``'reflect'`` repeats the edge pixel
  (``d c b a | a b c d | d c b a``; NumPy's ``'symmetric'``), ``'mirror'``
  does not (``d c b | a b c d | c b a``; NumPy's ``'reflect'``),
  ``'nearest'`` extends the edge, ``'wrap'`` tiles, ``'constant'`` pads with
  ``cval``.

Filters act on the last two axes (``[..., H, W]``); leading axes are a batch.
Kernels are built with NumPy at trace time (their sizes are static); each
1-D pass is one ``lax.conv_general_dilated`` of the padded rows or columns.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# scipy.ndimage mode name -> jnp.pad mode.
PAD_MODES = {"reflect": "symmetric", "mirror": "reflect", "nearest": "edge", "wrap": "wrap",
             "constant": "constant"}


def _check_mode(mode: str) -> str:
  if mode not in PAD_MODES:
    raise ValueError(f"mode={mode!r}; expected one of {sorted(PAD_MODES)} (scipy.ndimage's "
                     "boundary modes)")
  return PAD_MODES[mode]


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
  """The normalized 1-D Gaussian scipy's ``gaussian_filter1d`` uses: float64
  [2r + 1] with radius ``r = int(truncate * sigma + 0.5)``."""
  if sigma < 0:
    raise ValueError(f"sigma={sigma}; expected a value >= 0")
  radius = int(truncate * float(sigma) + 0.5)
  if sigma == 0 or radius == 0:
    return np.ones(1)
  x = np.arange(-radius, radius + 1, dtype=np.float64)
  phi = np.exp(-0.5 / float(sigma) ** 2 * x * x)
  return phi / phi.sum()


def correlate1d(x, weights, axis: int, *, mode: str = "reflect", cval: float = 0.0):
  """``out[i] = sum_k weights[k] * x[i + k - r]`` along ``axis`` (``r =
  len(weights) // 2``, odd length), outside pixels given by ``mode``: scipy's
  ``correlate1d`` with ``origin=0``."""
  weights = np.asarray(weights, np.float64)
  if weights.ndim != 1 or len(weights) % 2 != 1:
    raise ValueError(f"weights have shape {weights.shape}; expected an odd-length 1-D kernel")
  pad_mode = _check_mode(mode)
  x = jnp.asarray(x)
  axis = axis % x.ndim
  r = len(weights) // 2
  if r == 0:
    return x * jnp.asarray(weights[0], x.dtype)
  # The axis last, everything else a batch of 1-channel signals: one
  # VALID convolution of the padded signals (XLA compiles one conv far faster
  # than a sum of shifted slices, and its sums agree with scipy's to float
  # rounding; tests/test_classical.py checks Canny stays pixel-exact).
  moved = jnp.moveaxis(x, axis, -1)
  signals = moved.reshape(-1, 1, moved.shape[-1])
  kwargs = {"constant_values": cval} if pad_mode == "constant" else {}
  signals = jnp.pad(signals, ((0, 0), (0, 0), (r, r)), mode=pad_mode, **kwargs)
  out = jax.lax.conv_general_dilated(signals, jnp.asarray(weights, x.dtype)[None, None, :],
                                     (1,), "VALID", precision=jax.lax.Precision.HIGHEST)
  return jnp.moveaxis(out.reshape(moved.shape), -1, axis)


def separable(x, kernels, *, mode: str = "reflect", cval: float = 0.0):
  """``x`` [..., H, W] correlated with ``kernels = (k_rows, k_cols)`` along
  axes -2 and -1 in turn (as scipy filters each axis in turn)."""
  x = correlate1d(x, kernels[0], -2, mode=mode, cval=cval)
  return correlate1d(x, kernels[1], -1, mode=mode, cval=cval)


def gaussian_filter(x, sigma, *, truncate: float = 4.0, mode: str = "reflect",
                    cval: float = 0.0):
  """``x`` [..., H, W] float: scipy's ``gaussian_filter`` over the last two axes
  (``sigma`` a number or a (row, column) pair)."""
  sr, sc = (sigma, sigma) if np.isscalar(sigma) else tuple(sigma)
  return separable(x, (gaussian_kernel(sr, truncate), gaussian_kernel(sc, truncate)),
                   mode=mode, cval=cval)


def uniform_filter(x, size, *, mode: str = "reflect", cval: float = 0.0):
  """``x`` [..., H, W] float: the mean over a ``size`` x ``size`` window (odd
  ``size`` or (rows, cols) pair), scipy's ``uniform_filter``."""
  sr, sc = (size, size) if np.isscalar(size) else tuple(size)
  for s in (sr, sc):
    if int(s) != s or s < 1 or s % 2 != 1:
      raise ValueError(f"size={size}; expected odd positive window sides")
  return separable(x, (np.full(int(sr), 1.0 / sr), np.full(int(sc), 1.0 / sc)),
                   mode=mode, cval=cval)


def to_gray(images):
  """RGB [..., H, W, 3] -> luminance [..., H, W] with scikit-image's
  ``rgb2gray`` weights (``0.2125 R + 0.7154 G + 0.0721 B``); integer images are
  first scaled to [0, 1] by their dtype's maximum (``img_as_float``)."""
  images = jnp.asarray(images)
  if images.shape[-1] != 3:
    raise ValueError(f"images have shape {tuple(images.shape)}; expected RGB [..., H, W, 3]")
  if jnp.issubdtype(images.dtype, jnp.integer):
    images = images.astype(jnp.float32) / jnp.iinfo(images.dtype).max
  weights = jnp.asarray([0.2125, 0.7154, 0.0721], images.dtype)
  return images @ weights
