"""Image-to-image losses (denoising, restoration): L1, L2 and SSIM.

``pred`` and ``target`` are [B, H, W, C] images on one scale; ``where`` [B]
masks padded examples. With the package's shared reductions
(`visionjax.losses.reduction`): L1/L2 are element-wise (``'mean'`` divides by
the counted pixel values), the SSIM loss ``1 - SSIM`` is per image
(``'mean'`` divides by the counted images). SSIM is
`visionjax.classical.similarity.ssim` (the metric's), differentiable.
"""
from __future__ import annotations

import jax.numpy as jnp

from visionjax.classical import similarity
from visionjax.losses.reduction import reduce_loss


def _pair(pred, target, where, name):
  pred, target = jnp.asarray(pred, jnp.float32), jnp.asarray(target, jnp.float32)
  if pred.shape != target.shape or pred.ndim != 4:
    raise ValueError(f"{name}: pred {tuple(pred.shape)} and target {tuple(target.shape)}; "
                     "expected the same shape [batch, height, width, channels]")
  valid = jnp.ones(pred.shape[:1], bool) if where is None else jnp.asarray(where, bool)
  return pred, target, valid


def l1_loss(pred, target, *, where=None, reduction: str = "mean"):
  """``|pred - target|`` per pixel value."""
  pred, target, valid = _pair(pred, target, where, "l1_loss")
  return reduce_loss(jnp.abs(pred - target), 1.0, valid[:, None, None, None], reduction)


def l2_loss(pred, target, *, where=None, reduction: str = "mean"):
  """``(pred - target)^2`` per pixel value ('mean': the MSE)."""
  pred, target, valid = _pair(pred, target, where, "l2_loss")
  return reduce_loss((pred - target) ** 2, 1.0, valid[:, None, None, None], reduction)


def ssim_loss(pred, target, *, data_range: float = 1.0, where=None, reduction: str = "mean",
              **ssim_options):
  """``1 - SSIM`` per image (options: `visionjax.classical.similarity.ssim`'s)."""
  pred, target, valid = _pair(pred, target, where, "ssim_loss")
  value = similarity.ssim(pred, target, data_range, **ssim_options)
  return reduce_loss(1.0 - value, 1.0, valid, reduction)
