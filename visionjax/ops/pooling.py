"""Max pooling that returns argmax indices, and max unpooling with them.

SegNet (Badrinarayanan et al. 2017) stores, for every pooling window, where
its maximum came from, and its decoder puts each value back at exactly that
position with zeros elsewhere. Index convention (PyTorch's
`MaxPool2d(return_indices=True)`): per batch element and channel, the flat
position `row * W + col` in the [H, W] input plane.

Both ops are built from slices, argmax, one-hot and reshapes; for the
non-overlapping case (window == stride, SegNet's 2×2/2) the unpooling is a
one-hot multiply and a reshape, so there is no scatter at all and it is fast
on CPU, GPU and TPU alike. Overlapping windows fall back to a scatter. The
gradients are what autodiff gives those formulations: pooling routes the
cotangent to the argmax position, unpooling gathers it from there (tested
against NumPy in tests/test_ops_pooling.py).
"""
from __future__ import annotations

from typing import Tuple, Union

import einops
import jax
import jax.numpy as jnp

IntPair = Union[int, Tuple[int, int]]


def _pair(v: IntPair) -> Tuple[int, int]:
  return (v, v) if isinstance(v, int) else tuple(v)


def _check_rank4(x: jax.Array, name: str, what: str) -> None:
  if x.ndim != 4:
    raise ValueError(f"{name}: {what} must have rank 4 [B, H, W, C], got "
                     f"shape {tuple(x.shape)}")


def max_pool_with_indices(x: jax.Array, window: IntPair = 2,
                          stride: IntPair | None = None
                          ) -> Tuple[jax.Array, jax.Array]:
  """'VALID' (floor-mode) max pooling that also returns argmax positions.

  Args:
    x: [B, H, W, C] input.
    window: pooling window (kh, kw) or int.
    stride: strides (sh, sw); defaults to the window.
  Returns:
    values [B, Ho, Wo, C] with Ho = (H - kh) // sh + 1 (likewise Wo), and
    int32 indices [B, Ho, Wo, C] holding `row * W + col` of each maximum in
    the input plane. Ties go to the first position in row-major window order.
  """
  _check_rank4(x, "max_pool_with_indices", "x")
  (kh, kw), (sh, sw) = _pair(window), _pair(window if stride is None
                                            else stride)
  b, h, w, c = x.shape
  if h < kh or w < kw:
    raise ValueError(f"max_pool_with_indices: input {h}×{w} is smaller than "
                     f"the {kh}×{kw} window")
  ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
  # Every window tap as a strided slice: [B, Ho, Wo, kh*kw, C], row-major.
  taps = jnp.stack([
      x[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
      for i in range(kh) for j in range(kw)], axis=3)
  local = jnp.argmax(taps, axis=3)  # first maximum wins ties.
  values = jnp.take_along_axis(taps, local[:, :, :, None], axis=3)[:, :, :, 0]
  rows = jnp.arange(ho)[:, None, None] * sh + local // kw
  cols = jnp.arange(wo)[None, :, None] * sw + local % kw
  return values, (rows * w + cols).astype(jnp.int32)


def max_unpool(values: jax.Array, indices: jax.Array,
               output_size: Tuple[int, int], window: IntPair = 2,
               stride: IntPair | None = None) -> jax.Array:
  """Puts each pooled value back at its recorded position, zeros elsewhere.

  Args:
    values: [B, Ho, Wo, C] pooled values (or decoder features of that shape).
    indices: [B, Ho, Wo, C] int flat positions from `max_pool_with_indices`.
    output_size: (H, W) of the tensor that was pooled.
    window, stride: those used for pooling; when equal (non-overlapping)
      the op is a one-hot multiply + reshape instead of a scatter.
  Returns:
    [B, H, W, C] with out[b, idx // W, idx % W, c] = values[b, i, j, c].
  """
  _check_rank4(values, "max_unpool", "values")
  if indices.shape != values.shape:
    raise ValueError(f"max_unpool: indices shape {tuple(indices.shape)} must "
                     f"equal values shape {tuple(values.shape)}")
  (kh, kw), (sh, sw) = _pair(window), _pair(window if stride is None
                                            else stride)
  b, ho, wo, c = values.shape
  h, w = output_size
  if (h - kh) // sh + 1 != ho or (w - kw) // sw + 1 != wo:
    raise ValueError(f"max_unpool: pooled size {ho}×{wo} does not come from "
                     f"output_size {h}×{w} with window {kh}×{kw}, stride "
                     f"{sh}×{sw}")
  if (kh, kw) == (sh, sw):
    rows, cols = indices // w, indices % w
    di = rows - jnp.arange(ho)[:, None, None] * sh
    dj = cols - jnp.arange(wo)[None, :, None] * sw
    onehot = jax.nn.one_hot(di * kw + dj, kh * kw, dtype=values.dtype,
                            axis=3)  # [B, Ho, Wo, kh*kw, C]
    out = einops.rearrange(onehot * values[:, :, :, None],
                           "b h w (i j) c -> b (h i) (w j) c", i=kh, j=kw)
    # Floor-mode pooling dropped the last rows/cols; they unpool to zeros.
    return jnp.pad(out, ((0, 0), (0, h - ho * kh), (0, w - wo * kw), (0, 0)))
  flat = jnp.zeros((b, h * w, c), values.dtype)
  bi = jnp.arange(b)[:, None, None]
  ci = jnp.arange(c)[None, None, :]
  flat = flat.at[bi, indices.reshape(b, -1, c), ci].set(
      values.reshape(b, -1, c), mode="drop")
  return flat.reshape(b, h, w, c)
