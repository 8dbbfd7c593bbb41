"""Pasting per-RoI masks into the image, static shapes.

:func:`paste_masks` is torchvision's ``paste_masks_in_image`` (Mask R-CNN's
inference step) computed for all masks at once: each M×M mask (probabilities
or logits) is zero-padded by ``padding`` cells, its box (pixel xyxy) is grown
by the same factor ``(M + 2·padding) / M`` about its centre and truncated to
integers ``(bx0, by0, bx1, by1)`` (towards zero, as ``Tensor.to(int64)``),
the padded mask is resized bilinearly (``align_corners=False``, source
coordinates below 0 clamped to 0) to ``(by1 - by0 + 1) × (bx1 - bx0 + 1)``
(at least 1×1) and written at rows ``by0..by1``, columns ``bx0..bx1`` of a
zero H×W image, cropped to the image.

Boxes wholly outside the image give an all-zero mask here; torchvision's
slicing raises for them (its negative slice bounds wrap around), so the
tests compare only boxes that touch the image.

Bilinear resizing is separable, so each pasted mask is ``Ry @ mask @ Rxᵀ``
with sparse interpolation matrices Ry [H, M+2] and Rx [W, M+2] built from the
box: no per-box dynamic shapes, and differentiable in the mask.
"""
from __future__ import annotations

from typing import Tuple

import jax
import jax.numpy as jnp


def _resize_matrix(lo, hi, size: int, src: int, dtype):
  """[N, size, src]: row y of the image reads source cells of the padded mask.

  lo/hi int [N] first/last image row of the pasted box (inclusive).
  """
  out = jnp.maximum(hi - lo + 1, 1).astype(dtype)                   # [N]
  y = jnp.arange(size)
  u = (y[None, :] - lo[:, None]).astype(dtype)                        # row in the box
  inside = (y[None, :] >= lo[:, None]) & (y[None, :] <= hi[:, None])
  scale = src / out                                                   # float32 like PyTorch
  pos = jnp.maximum(scale[:, None] * (u + 0.5) - 0.5, 0.0)
  i0 = jnp.minimum(jnp.floor(pos).astype(jnp.int32), src - 1)
  i1 = jnp.minimum(i0 + 1, src - 1)
  l1 = pos - i0.astype(dtype)
  m = (jax.nn.one_hot(i0, src, dtype=dtype) * (1.0 - l1)[..., None] +
       jax.nn.one_hot(i1, src, dtype=dtype) * l1[..., None])
  return jnp.where(inside[..., None], m, 0.0)


def paste_masks(masks, boxes, image_size: Tuple[int, int], *, padding: int = 1, valid=None):
  """Pastes RoI masks into an image-sized canvas (torchvision semantics).

  Args:
    masks: [N, M, M] per-box masks (e.g. sigmoid probabilities); use
      ``jax.vmap`` for a batch of images.
    boxes: [N, 4] pixel xyxy boxes the masks were predicted for.
    image_size: static (H, W) of the output.
    padding: zero cells added around each mask before resizing (torchvision
      uses 1 so the mask fades to 0 at the box border).
    valid: optional bool [N]; rows where False come out as zeros.

  Returns: [N, H, W] in the masks' dtype; threshold it (e.g. > 0.5) for
  binary masks.
  """
  masks = jnp.asarray(masks)
  boxes = jnp.asarray(boxes)
  if masks.ndim != 3 or masks.shape[1] != masks.shape[2]:
    raise ValueError(f"paste_masks: masks has shape {masks.shape}; expected [N, M, M] (square)")
  n, m = masks.shape[0], masks.shape[-1]
  if boxes.shape != (n, 4):
    raise ValueError(f"paste_masks: boxes has shape {boxes.shape}; expected ({n}, 4)")
  if not (isinstance(padding, int) and padding >= 0):
    raise ValueError(f"paste_masks: padding={padding!r}; expected an int >= 0")
  h, w = image_size
  if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
    raise ValueError(f"paste_masks: image_size={image_size!r}; expected static (H, W) > 0")
  dtype = masks.dtype if jnp.issubdtype(masks.dtype, jnp.floating) else jnp.float32
  masks = masks.astype(dtype)
  boxes = jax.lax.stop_gradient(boxes.astype(dtype))
  if valid is not None:
    valid = jnp.asarray(valid, bool)
    boxes = jnp.where(valid[:, None], boxes, 0.0)
  src = m + 2 * padding
  grow = src / m
  half_w = (boxes[:, 2] - boxes[:, 0]) * 0.5 * grow
  half_h = (boxes[:, 3] - boxes[:, 1]) * 0.5 * grow
  cx = (boxes[:, 2] + boxes[:, 0]) * 0.5
  cy = (boxes[:, 3] + boxes[:, 1]) * 0.5
  # Truncation towards zero (torch's float -> int64 cast), not floor.
  x0, x1 = jnp.trunc(cx - half_w).astype(jnp.int32), jnp.trunc(cx + half_w).astype(jnp.int32)
  y0, y1 = jnp.trunc(cy - half_h).astype(jnp.int32), jnp.trunc(cy + half_h).astype(jnp.int32)
  padded = jnp.pad(masks, ((0, 0), (padding, padding), (padding, padding)))
  ry = _resize_matrix(y0, y1, h, src, dtype)
  rx = _resize_matrix(x0, x1, w, src, dtype)
  out = jnp.einsum("nyi,nij,nxj->nyx", ry, padded, rx, precision=jax.lax.Precision.HIGHEST)
  if valid is not None:
    out = jnp.where(valid[:, None, None], out, 0.0)
  return out
