"""SLIC superpixels (Achanta et al., TPAMI 2012), in JAX with static shapes.

Local k-means in (colour, position): seeds on scikit-image's regular grid
(``skimage.util.regular_grid``: step ``s = sqrt(H W / n_segments)``, first
seed at ``s // 2``, spacing ``round(s)``), each seed's colour the pixel under
it. Each iteration assigns every pixel to the centre minimizing
``|colour - c_k|^2 / compactness^2 + |position - p_k|^2 / step^2`` among the
centres within ``2 step`` of it (rows and columns separately: the SLIC search
window), then moves every centre to the mean colour and position of its
pixels (a centre with none stays). The image is first rescaled to [0, 1] by
its own minimum and maximum, as scikit-image does.

Differences from ``skimage.segmentation.slic`` (documented and measured in
tests/test_classical.py, which compares the two with the adjusted Rand index):
no Lab conversion (pass Lab yourself if wanted; scikit-image converts RGB
unless ``convert2lab=False``), no Gaussian pre-smoothing (its ``sigma=0``),
no connectivity enforcement (its ``enforce_connectivity=False``), and
a fixed number of iterations (it stops early once no pixel changes). Labels
are ``0 .. K - 1`` in grid order; some may be unused.

Every pixel is compared with every centre and the window masks the rest:
[H W, K] distances per iteration, fine for the small images this package
trains on.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def grid_seeds(height: int, width: int, n_segments: int
               ) -> tuple[np.ndarray, tuple[int, int]]:
  """Seed positions [K, 2] (row, col) on scikit-image's regular grid, and the
  integer (row, column) spacings."""
  if n_segments < 1:
    raise ValueError(f"n_segments={n_segments}; expected at least 1")
  if height * width <= n_segments:
    rows, cols, spacing = np.arange(height), np.arange(width), (1, 1)
  else:
    step = math.sqrt(height * width / n_segments)
    steps = [step, step]
    if min(height, width) < step:  # the short side gets one seed row/column
      short = 0 if height <= width else 1
      steps[short] = float((height, width)[short])
      steps[1 - short] = (height, width)[1 - short] / n_segments
    spacing = (int(round(steps[0])), int(round(steps[1])))
    rows = np.arange(int(steps[0] // 2), height, spacing[0])
    cols = np.arange(int(steps[1] // 2), width, spacing[1])
  rr, cc = np.meshgrid(rows, cols, indexing="ij")
  return np.stack([rr.ravel(), cc.ravel()], -1).astype(np.float32), spacing


def slic(image, n_segments: int = 100, compactness: float = 10.0, num_iters: int = 10):
  """SLIC superpixels of one image.

  Args:
    image: float [H, W, C] (or [H, W]).
    n_segments: approximate number of superpixels (static).
    compactness: colour vs. space balance; larger gives squarer superpixels.
    num_iters: static number of iterations.

  Returns:
    int32 [H, W] superpixel labels in ``[0, K)``, K the number of grid seeds.
  """
  x = jnp.asarray(image, jnp.float32)
  if x.ndim == 2:
    x = x[..., None]
  if x.ndim != 3:
    raise ValueError(f"image has shape {tuple(jnp.shape(image))}; expected [H, W] or "
                     "[H, W, channels]")
  if compactness <= 0:
    raise ValueError(f"compactness={compactness}; expected a positive number")
  h, w, c = x.shape
  lo, hi = jnp.min(x), jnp.max(x)
  x = (x - lo) / jnp.where(hi > lo, hi - lo, 1.0)
  seeds, spacing = grid_seeds(h, w, n_segments)
  step = float(max(spacing))
  win = jnp.asarray(spacing, jnp.float32) * 2
  k = seeds.shape[0]
  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                        indexing="ij")
  pos = jnp.stack([yy.ravel(), xx.ravel()], -1)  # [N, 2]
  col = x.reshape(h * w, c)
  centres_pos = jnp.asarray(seeds)
  centres_col = jnp.zeros((k, c), jnp.float32)  # the first assignment is by position only

  def assign(cp, cc):
    dpos = pos[:, None, :] - cp[None, :, :]  # [N, K, 2]
    # scikit-image's window: floor(c - 2 s) <= p < floor(c + 2 s + 1), per axis.
    inside = jnp.all((pos[:, None, :] >= jnp.floor(cp - win)[None])
                     & (pos[:, None, :] < jnp.floor(cp + win + 1)[None]), axis=-1)
    d = (jnp.sum((col[:, None, :] - cc[None]) ** 2, -1) / compactness ** 2
         + jnp.sum(dpos ** 2, -1) / step ** 2)
    return jnp.argmin(jnp.where(inside, d, jnp.inf), axis=-1)

  def body(carry, _):
    cp, cc = carry
    labels = assign(cp, cc)
    one_hot = jax.nn.one_hot(labels, k, dtype=jnp.float32)
    count = one_hot.sum(0)[:, None]
    keep = count > 0
    cp = jnp.where(keep, one_hot.T @ pos / jnp.maximum(count, 1.0), cp)
    cc = jnp.where(keep, one_hot.T @ col / jnp.maximum(count, 1.0), cc)
    return (cp, cc), None

  (cp, cc), _ = jax.lax.scan(body, (centres_pos, centres_col), None, length=num_iters)
  return assign(cp, cc).astype(jnp.int32).reshape(h, w)
