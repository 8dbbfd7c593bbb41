"""Global (Otsu) and adaptive (local mean / Gaussian) thresholds, in JAX.

Both follow scikit-image's definitions, so the thresholds are the ones
``skimage.filters.threshold_otsu`` and ``threshold_local`` return:

* Otsu's histogram (``skimage.exposure.histogram(source_range='image')``):
  an integer image has one bin per integer value from its minimum to its
  maximum (``nbins`` is ignored); a float image has ``nbins`` equal bins
  from its minimum to its maximum (NumPy's ``histogram``: a value on an
  inner edge goes to the bin above, the maximum to the last bin), and a
  threshold is a bin *centre*. The threshold maximizes the between-class
  variance ``w1 w2 (m1 - m2)^2`` of "at most that bin" versus the rest; the
  first maximum wins. A constant image's threshold is its value. The
  foreground is ``image > threshold``.
* ``threshold_local``: the Gaussian-weighted (``sigma = (block_size - 1) / 6``
  unless ``param`` is given, truncated at 4 sigma) or plain mean of the
  ``block_size`` neighbourhood, minus ``offset``; integer images are cast to
  float without rescaling, as scikit-image does.

Static shapes: the histogram always has 256 bins for uint8 images (the
bins outside [min, max] are empty and never chosen) and ``nbins`` for float
images, so the functions jit and vmap; leading axes are a batch.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from visionjax.classical import filters


def _histogram(image, nbins: int):
  """One image's (counts [n], bin centres [n], valid [n]): Otsu's binning."""
  x = image.reshape(-1)
  if jnp.issubdtype(x.dtype, jnp.integer):
    if x.dtype.itemsize != 1:
      raise ValueError(f"integer images of dtype {x.dtype} are not supported; expected uint8 "
                       "or int8 (one bin per value) or a float image")
    lo = int(jnp.iinfo(x.dtype).min)
    n = 256
    counts = jnp.zeros(n, jnp.float32).at[x.astype(jnp.int32) - lo].add(1.0)
    centres = jnp.arange(lo, lo + n, dtype=jnp.float32)
    return counts, centres
  x = x.astype(jnp.float32)
  lo, hi = jnp.min(x), jnp.max(x)
  # NumPy's bin edges (linspace) and its exact-edge rule: bin i holds
  # edges[i] <= v < edges[i + 1], the last bin also holds the maximum.
  edges = lo + jnp.arange(nbins + 1, dtype=jnp.float32) * ((hi - lo) / nbins)
  edges = edges.at[-1].set(hi)
  idx = jnp.searchsorted(edges, x, side="right") - 1
  idx = jnp.clip(idx, 0, nbins - 1)
  counts = jnp.zeros(nbins, jnp.float32).at[idx].add(1.0)
  centres = (edges[:-1] + edges[1:]) / 2
  return counts, centres


def _otsu_one(image, nbins: int):
  counts, centres = _histogram(image, nbins)
  w1 = jnp.cumsum(counts)
  w2 = jnp.cumsum(counts[::-1])[::-1]
  s = counts * centres
  m1 = jnp.cumsum(s) / jnp.maximum(w1, 1.0)
  m2 = jnp.cumsum(s[::-1])[::-1] / jnp.maximum(w2, 1.0)
  between = w1[:-1] * w2[1:] * (m1[:-1] - m2[1:]) ** 2
  # Thresholds below the minimum or at/above the maximum split off nothing
  # (scikit-image trims those empty end bins before choosing).
  between = jnp.where((w1[:-1] > 0) & (w2[1:] > 0), between, -jnp.inf)
  t = centres[jnp.argmax(between)]
  flat = image.reshape(-1)
  constant = jnp.all(flat == flat[0])
  return jnp.where(constant, flat[0].astype(jnp.float32), t)


def threshold_otsu(images, nbins: int = 256):
  """Otsu's threshold of each image.

  Args:
    images: [..., H, W] grayscale, uint8/int8 or float (leading axes: batch).
    nbins: bins of a float image's histogram (static).

  Returns:
    float32 [...]: one threshold per image (foreground: ``image > t``).
  """
  images = jnp.asarray(images)
  if images.ndim < 2:
    raise ValueError(f"images have shape {tuple(images.shape)}; expected [..., H, W]")
  if nbins < 2:
    raise ValueError(f"nbins={nbins}; expected at least 2")
  lead = images.shape[:-2]
  flat = images.reshape((-1,) + images.shape[-2:])
  out = jax.vmap(lambda im: _otsu_one(im, nbins))(flat)
  return out.reshape(lead)


def threshold_local(images, block_size: int, method: str = "gaussian", offset: float = 0.0,
                    mode: str = "reflect", param: float | None = None, cval: float = 0.0):
  """Per-pixel thresholds from each pixel's neighbourhood.

  Args:
    images: [..., H, W] grayscale (integer images are cast to float32
      unscaled).
    block_size: odd side of the neighbourhood.
    method: 'gaussian' (sigma = ``param`` or ``(block_size - 1) / 6``) or
      'mean' (the ``block_size`` x ``block_size`` mean).
    offset: subtracted from the local mean.
    mode, cval: scipy.ndimage boundary mode (`visionjax.classical.filters`).

  Returns:
    float32 [..., H, W]; the foreground is ``image > threshold``.
  """
  if int(block_size) != block_size or block_size < 1 or block_size % 2 != 1:
    raise ValueError(f"block_size={block_size}; expected an odd positive integer")
  x = jnp.asarray(images).astype(jnp.float32)
  if x.ndim < 2:
    raise ValueError(f"images have shape {tuple(x.shape)}; expected [..., H, W]")
  if method == "gaussian":
    sigma = (block_size - 1) / 6.0 if param is None else param
    local = filters.gaussian_filter(x, sigma, mode=mode, cval=cval)
  elif method == "mean":
    local = filters.uniform_filter(x, block_size, mode=mode, cval=cval)
  else:
    raise ValueError(f"method={method!r}; expected 'gaussian' or 'mean'")
  return local - offset
