"""PSNR and SSIM per image, in JAX (scikit-image's definitions).

Both return one value per image, so a task sums them over a batch and
divides by the image count once on host (padded examples masked out). They
live at the bottom layer so that both `visionjax.metrics.image_quality` (the
metrics) and `visionjax.losses.image` (the SSIM loss) can use them.

* ``psnr(pred, target, data_range)`` = ``10 log10(data_range^2 / MSE)``, the
  MSE over all pixels and channels of the image
  (``skimage.metrics.peak_signal_noise_ratio``); identical images give +inf.
* ``ssim(pred, target, data_range, ...)``: scikit-image's
  ``structural_similarity(target, pred, data_range=..., channel_axis=-1)``
  with the same options and defaults: ``win_size`` 7 uniform window, or
  ``gaussian_weights=True`` (sigma 1.5 truncated at 3.5 sigma: an 11-tap
  window unless ``win_size`` is given); local means, variances and
  covariance by that filter with scipy's 'reflect' boundary; the variances
  scaled by ``NP / (NP - 1)``, ``NP = win_size^2``, when
  ``use_sample_covariance`` (the default; Wang et al. 2004 use False);
  ``C1 = (K1 R)^2``, ``C2 = (K2 R)^2`` (K1 0.01, K2 0.03, R = data_range);
  the SSIM map averaged after cropping ``(win_size - 1) // 2`` pixels from
  every border; channels averaged. Equal to scikit-image to 1e-6 (tested).

Numerics: variances are computed from images shifted by their own mean (the
local variance and covariance do not change under a constant shift), which
keeps ``E[x^2] - E[x]^2`` from cancelling in float32.
"""
from __future__ import annotations

import jax.numpy as jnp

from visionjax.classical import filters


def _check_pair(pred, target, name: str):
  pred, target = jnp.asarray(pred), jnp.asarray(target)
  if pred.shape != target.shape or pred.ndim != 4:
    raise ValueError(f"{name}: pred {tuple(pred.shape)} and target {tuple(target.shape)}; "
                     "expected the same shape [batch, height, width, channels]")
  return pred.astype(jnp.float32), target.astype(jnp.float32)


def psnr(pred, target, data_range: float = 1.0):
  """Peak signal-to-noise ratio in dB of each image: float32 [B].

  Args:
    pred, target: [B, H, W, C] images on the scale of ``data_range`` (e.g.
      [0, 1] with ``data_range=1``).
  """
  pred, target = _check_pair(pred, target, "psnr")
  mse = jnp.mean((pred - target) ** 2, axis=(1, 2, 3))
  return 10.0 * jnp.log10(data_range ** 2 / mse)


def ssim(pred, target, data_range: float = 1.0, *, win_size: int | None = None,
         gaussian_weights: bool = False, sigma: float = 1.5,
         use_sample_covariance: bool = True, k1: float = 0.01, k2: float = 0.03,
         return_map: bool = False):
  """Mean structural similarity of each image: float32 [B] (see module).

  Args:
    pred, target: [B, H, W, C] images (H and W at least ``win_size``).
    data_range: the images' value range R (1 for [0, 1] images).
    win_size, gaussian_weights, sigma, use_sample_covariance, k1, k2:
      scikit-image's options (``K1``/``K2`` there), all static.
    return_map: also return the uncropped SSIM map [B, H, W, C].
  """
  pred, target = _check_pair(pred, target, "ssim")
  if gaussian_weights:
    truncate = 3.5
    if win_size is None:
      win_size = 2 * int(truncate * sigma + 0.5) + 1
  elif win_size is None:
    win_size = 7
  if win_size % 2 != 1 or win_size < 1:
    raise ValueError(f"ssim: win_size={win_size}; expected an odd positive integer")
  h, w = pred.shape[1:3]
  if h < win_size or w < win_size:
    raise ValueError(f"ssim: images of {h}x{w} pixels are smaller than win_size={win_size}")
  if gaussian_weights:
    blur = lambda x: filters.gaussian_filter(x, sigma, truncate=truncate, mode="reflect")
  else:
    blur = lambda x: filters.uniform_filter(x, win_size, mode="reflect")
  # Channels first, so the filters act on the last two axes.
  x = jnp.moveaxis(target, -1, 1)
  y = jnp.moveaxis(pred, -1, 1)
  ux, uy = blur(x), blur(y)
  xs = x - jnp.mean(x, axis=(2, 3), keepdims=True)
  ys = y - jnp.mean(y, axis=(2, 3), keepdims=True)
  uxs, uys = blur(xs), blur(ys)
  n = win_size ** 2
  cov_norm = n / (n - 1) if use_sample_covariance else 1.0
  vx = cov_norm * (blur(xs * xs) - uxs * uxs)
  vy = cov_norm * (blur(ys * ys) - uys * uys)
  vxy = cov_norm * (blur(xs * ys) - uxs * uys)
  c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
  s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
  pad = (win_size - 1) // 2
  cropped = s[:, :, pad:h - pad, pad:w - pad]
  value = jnp.mean(jnp.mean(cropped, axis=(2, 3)), axis=1)
  if return_map:
    return value, jnp.moveaxis(s, 1, -1)
  return value
