"""K-means and spectral clustering, in JAX (fixed iterations, seeded init).

* `kmeans`: Lloyd's algorithm for a fixed number of iterations from given
  centres: assign each point to its nearest centre (squared Euclidean
  distance, the lowest index on a tie), move each centre to the mean of its
  points (a centre with no points stays where it is), and assign once more
  with the final centres. From the same initial centres this is
  scikit-learn's ``KMeans(init=centres, n_init=1, algorithm='lloyd')``
  (which stops early only at a fixed point, where further iterations change
  nothing); scikit-learn moves an empty cluster's centre to a far point
  instead, which this does not.
* `kmeans_plusplus`: seeded k-means++ initial centres (D^2 sampling, one
  candidate per step; scikit-learn tries ``2 + log k`` candidates greedily,
  so the centres differ from its init but follow the same rule).
* `spectral_clustering`: the normalized-Laplacian embedding scikit-learn's
  ``SpectralClustering(affinity='precomputed')`` uses (the affinity's diagonal
  ignored, ``L = I - D^-1/2 W D^-1/2``, the eigenvectors of its ``k``
  smallest eigenvalues divided by ``sqrt(degree)``), then `kmeans` from
  ``n_init`` seeded k-means++ starts, keeping the lowest inertia.
  Eigenvectors are computed densely (``jnp.linalg.eigh``), so this is for
  small graphs: an image of a few hundred pixels.
* `pixel_affinity`: the graph of an image's pixels, ``exp(-|c_i - c_j|^2 /
  (2 sigma_colour^2)) exp(-|p_i - p_j|^2 / (2 sigma_space^2))`` for pixels at
  most ``radius`` apart (0 beyond): colour and position together.

Padding: points with ``valid`` False take no part (they are assigned a
label but neither move a centre nor count in the inertia).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def _sq_dists(points, centres):
  """[N, K] squared distances."""
  return (jnp.sum(points * points, -1)[:, None] - 2 * points @ centres.T
          + jnp.sum(centres * centres, -1)[None, :])


def _assign(points, centres):
  d = jnp.sum((points[:, None, :] - centres[None, :, :]) ** 2, -1)
  return jnp.argmin(d, axis=-1), jnp.min(d, axis=-1)


def kmeans(points, init, num_iters: int = 20, valid=None):
  """Lloyd's k-means for ``num_iters`` iterations.

  Args:
    points: float [N, D].
    init: float [K, D] initial centres.
    num_iters: static number of centre updates.
    valid: optional bool [N]; padded points (False) take no part.

  Returns:
    ``(centres [K, D], labels int32 [N], inertia [])``: the final centres,
    each point's nearest final centre, and the sum of squared distances of the
    valid points to it.
  """
  points = jnp.asarray(points, jnp.float32)
  centres = jnp.asarray(init, jnp.float32)
  if points.ndim != 2 or centres.ndim != 2 or points.shape[1] != centres.shape[1]:
    raise ValueError(f"points {tuple(points.shape)} and init {tuple(centres.shape)}; expected "
                     "[N, D] and [K, D] with the same D")
  k = centres.shape[0]
  weight = jnp.ones(points.shape[0], jnp.float32) if valid is None else jnp.asarray(
      valid, jnp.float32)

  def step(c, _):
    labels, _ = _assign(points, c)
    one_hot = jax.nn.one_hot(labels, k, dtype=jnp.float32) * weight[:, None]
    count = one_hot.sum(0)
    sums = one_hot.T @ points
    new = jnp.where(count[:, None] > 0, sums / jnp.maximum(count, 1.0)[:, None], c)
    return new, None

  centres, _ = jax.lax.scan(step, centres, None, length=num_iters)
  labels, d = _assign(points, centres)
  return centres, labels.astype(jnp.int32), jnp.sum(d * weight)


def kmeans_plusplus(key, points, k: int, valid=None):
  """``k`` initial centres [k, D] by k-means++ from ``key``: the first a
  uniformly drawn point, each next one drawn with probability proportional
  to its squared distance to the nearest centre so far."""
  points = jnp.asarray(points, jnp.float32)
  n = points.shape[0]
  weight = jnp.ones(n, jnp.float32) if valid is None else jnp.asarray(valid, jnp.float32)
  keys = jax.random.split(key, k)
  first = jax.random.choice(keys[0], n, p=weight / jnp.sum(weight))
  centres = jnp.zeros((k, points.shape[1]), jnp.float32).at[0].set(points[first])
  d2 = jnp.sum((points - points[first]) ** 2, -1)

  def body(i, carry):
    c, d = carry
    p = d * weight
    p = jnp.where(jnp.sum(p) > 0, p / jnp.maximum(jnp.sum(p), 1e-30), weight / jnp.sum(weight))
    j = jax.random.choice(keys[i], n, p=p)
    c = c.at[i].set(points[j])
    return c, jnp.minimum(d, jnp.sum((points - points[j]) ** 2, -1))

  centres, _ = jax.lax.fori_loop(1, k, body, (centres, d2))
  return centres


def kmeans_image(key, image, k: int = 2, num_iters: int = 20):
  """Colour k-means of one image [H, W, C] -> labels int32 [H, W]."""
  h, w, c = image.shape
  points = jnp.asarray(image, jnp.float32).reshape(h * w, c)
  init = kmeans_plusplus(key, points, k)
  return kmeans(points, init, num_iters)[1].reshape(h, w)


def spectral_embedding(affinity, k: int):
  """[N, N] symmetric non-negative affinity -> [N, k] embedding (see module)."""
  w = jnp.asarray(affinity, jnp.float32)
  n = w.shape[0]
  if w.ndim != 2 or w.shape[1] != n:
    raise ValueError(f"affinity has shape {tuple(w.shape)}; expected a square [N, N] matrix")
  w = w * (1.0 - jnp.eye(n, dtype=w.dtype))
  degree = jnp.sum(w, axis=0)
  degree = jnp.where(degree > 0, degree, 1.0)  # isolated nodes (scipy's laplacian)
  dd = jnp.sqrt(degree)
  lap = jnp.eye(n, dtype=w.dtype) - w / dd[:, None] / dd[None, :]
  _, vectors = jnp.linalg.eigh(lap)  # ascending eigenvalues
  return vectors[:, :k] / dd[:, None]


def spectral_clustering(key, affinity, k: int, *, num_iters: int = 50, n_init: int = 4):
  """Spectral clustering of a graph: labels int32 [N] (see module)."""
  emb = spectral_embedding(affinity, k)
  keys = jax.random.split(key, n_init)
  runs = jax.vmap(lambda kk: kmeans(emb, kmeans_plusplus(kk, emb, k), num_iters))(keys)
  best = jnp.argmin(runs[2])
  return runs[1][best]


def pixel_affinity(image, *, sigma_colour: float = 0.1, sigma_space: float = 4.0,
                   radius: float = 6.0):
  """The pixel graph of one image [h, w, C] (see module): float32 [h*w, h*w]."""
  image = jnp.asarray(image, jnp.float32)
  if image.ndim != 3:
    raise ValueError(f"image has shape {tuple(image.shape)}; expected [h, w, channels]")
  h, w, c = image.shape
  colours = image.reshape(h * w, c)
  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                        indexing="ij")
  pos = jnp.stack([yy.ravel(), xx.ravel()], -1)
  dc = jnp.maximum(_sq_dists(colours, colours), 0.0)
  dp = jnp.maximum(_sq_dists(pos, pos), 0.0)
  aff = jnp.exp(-dc / (2 * sigma_colour ** 2) - dp / (2 * sigma_space ** 2))
  return jnp.where(dp <= radius ** 2, aff, 0.0)
