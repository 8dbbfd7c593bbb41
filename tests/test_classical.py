"""visionjax.classical against scikit-image / scikit-learn on the same inputs.

Deterministic methods must give scikit-image's result exactly (thresholds to
float32 rounding, Canny edges pixel for pixel); the iterative ones are
compared with the reference from the same start: k-means labels equal and
centres to 1e-4, spectral clustering's adjusted Rand index vs scikit-learn's
SpectralClustering on a well-separated image, and SLIC's labels vs
skimage.segmentation.slic (same grid, no Lab, no smoothing, no connectivity
enforcement): the share of pixels given the same superpixel and the ARI are
both >= 0.99 at compactness 1 and 10 and >= 0.94 at 0.1 (measured values
beside the test).

Inputs: synthetic digit-like scenes made here (blobs and strokes on a colour
gradient with noise), so no dataset build is needed.
"""
from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import feature, segmentation
from skimage import filters as skfilters
from skimage.color import rgb2gray
from skimage.util import regular_grid
from sklearn.cluster import KMeans, SpectralClustering
from sklearn.metrics import adjusted_rand_score

from visionjax import classical


def _scenes(n=4, size=48, seed=0):
  """uint8 [n, size, size, 3]: a colour gradient, filled discs and strokes of
  contrasting colours, and pixel noise."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:size, :size] / size
  out = []
  for _ in range(n):
    a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    img = a * (1 - yy[..., None]) + b * xx[..., None] * 0.5
    for _ in range(3):
      cy, cx, r = rng.uniform(8, size - 8, 2).tolist() + [rng.uniform(3, 8)]
      disc = (np.mgrid[:size, :size][0] - cy) ** 2 + (np.mgrid[:size, :size][1] - cx) ** 2 < r * r
      img[disc] = rng.uniform(0, 1, 3)
    row = rng.integers(5, size - 5)
    img[row:row + 3, 5:size - 5] = rng.uniform(0, 1, 3)
    img = img + rng.normal(0, 0.03, img.shape)
    out.append(np.clip(img * 255, 0, 255).round().astype(np.uint8))
  return np.stack(out)


@pytest.fixture(scope="module")
def scenes():
  rgb = _scenes()
  gray_f = rgb2gray(rgb.astype(np.float32) / 255).astype(np.float32)
  gray_u8 = (gray_f * 255).round().astype(np.uint8)
  return rgb, gray_f, gray_u8


def test_otsu_equals_skimage_uint8_and_float(scenes):
  _, gray_f, gray_u8 = scenes
  otsu = jax.jit(classical.threshold_otsu, static_argnames="nbins")
  # uint8: one bin per value between the image's min and max; a narrow-range
  # image (bins trimmed at both ends) in the same batch, with a batch axis.
  narrow = (gray_u8[:2] // 4 + 60).astype(np.uint8)
  images = np.concatenate([gray_u8, narrow])[None]
  got = np.asarray(otsu(images))[0]
  want = np.array([skfilters.threshold_otsu(g) for g in images[0]])
  np.testing.assert_array_equal(got, want)
  # float: nbins equal bins from min to max, thresholds at bin centres.
  for nbins in (256, 37):
    got = np.asarray(otsu(gray_f, nbins=nbins))
    want = np.array([skfilters.threshold_otsu(g, nbins=nbins) for g in gray_f])
    np.testing.assert_allclose(got, want, rtol=1e-6)
  # A constant image's threshold is its value (scikit-image's special case),
  # and a hand-checked case: two values, the threshold is the lower one's bin.
  small = np.array([np.full((2, 4), 7), [[10, 10, 200, 200], [10, 10, 200, 200]]], np.uint8)
  got = np.asarray(otsu(small))
  assert got.tolist() == [7.0, 10.0] == [skfilters.threshold_otsu(g) for g in small]


@pytest.mark.parametrize("method,block,offset", [("gaussian", 15, 0.0), ("gaussian", 7, 0.02),
                                                 ("mean", 11, 0.01)])
def test_threshold_local_equals_skimage(scenes, method, block, offset):
  _, gray_f, _ = scenes
  got = np.asarray(classical.threshold_local(gray_f, block, method=method, offset=offset))
  want = np.stack([skfilters.threshold_local(g, block, method=method, offset=offset)
                   for g in gray_f])
  np.testing.assert_allclose(got, want, atol=1e-6)
  with pytest.raises(ValueError, match="block_size=8"):
    classical.threshold_local(gray_f, 8)


def test_sobel_equals_skimage(scenes):
  _, gray_f, gray_u8 = scenes
  np.testing.assert_allclose(np.asarray(classical.sobel(gray_f)),
                             np.stack([skfilters.sobel(g) for g in gray_f]), atol=1e-6)
  # Integer images are scaled to [0, 1] first (img_as_float).
  np.testing.assert_allclose(np.asarray(classical.sobel(gray_u8)),
                             np.stack([skfilters.sobel(g) for g in gray_u8]), atol=1e-6)


@pytest.mark.parametrize("sigma,low,high,mode", [(1.0, None, None, "constant"),
                                                 (2.0, 0.05, 0.15, "reflect"),
                                                 (1.5, 0.02, 0.1, "constant")])
def test_canny_equals_skimage(scenes, sigma, low, high, mode):
  _, gray_f, _ = scenes
  got = np.asarray(classical.canny(gray_f, sigma, low, high, mode=mode))
  want = np.stack([feature.canny(g, sigma, low, high, mode=mode) for g in gray_f])
  assert want.sum() > 100  # the scenes do have edges
  np.testing.assert_array_equal(got, want)


def test_canny_uint8_thresholds_are_scaled_like_skimage(scenes):
  _, _, gray_u8 = scenes
  got = np.asarray(classical.canny(gray_u8[:2], 1.0, 10, 30))
  want = np.stack([feature.canny(g, 1.0, 10, 30) for g in gray_u8[:2]])
  np.testing.assert_array_equal(got, want)


def test_fill_holes_equals_scipy(scenes):
  _, gray_f, _ = scenes
  masks = gray_f > 0.5
  masks[0, 10:20, 10:20] = True
  masks[0, 13:16, 13:16] = False  # a hole
  np.testing.assert_array_equal(np.asarray(classical.fill_holes(masks)),
                                np.stack([ndi.binary_fill_holes(m) for m in masks]))


def test_kmeans_equals_sklearn_from_the_same_init():
  rng = np.random.default_rng(0)
  means = np.array([[0, 0, 0], [2, 2, 0], [0, 2, 2], [2, 0, 2]], np.float32)
  points = np.concatenate([rng.normal(m, 0.4, (150, 3)) for m in means]).astype(np.float32)
  init = np.asarray(classical.kmeans_plusplus(jax.random.key(0), points, 4))
  assert len({tuple(c) for c in init}) == 4  # distinct data points
  centres, labels, inertia = jax.jit(classical.kmeans, static_argnums=2)(points, init, 30)
  ref = KMeans(4, init=init, n_init=1, max_iter=30, tol=0, algorithm="lloyd").fit(points)
  np.testing.assert_array_equal(np.asarray(labels), ref.labels_)
  np.testing.assert_allclose(np.asarray(centres), ref.cluster_centers_, atol=1e-4)
  np.testing.assert_allclose(float(inertia), ref.inertia_, rtol=1e-4)
  # Overlapping clusters, a few iterations (not converged): still the same steps.
  blob = rng.normal(0, 1, (400, 3)).astype(np.float32)
  centres, labels, _ = classical.kmeans(blob, blob[:5], 4)
  ref = KMeans(5, init=blob[:5], n_init=1, max_iter=4, tol=0, algorithm="lloyd").fit(blob)
  np.testing.assert_array_equal(np.asarray(labels), ref.labels_)
  np.testing.assert_allclose(np.asarray(centres), ref.cluster_centers_, atol=1e-4)


def test_spectral_clustering_agrees_with_sklearn():
  """Three colour regions, one of them split in two by position: ARI 1.0
  against scikit-learn's SpectralClustering on the same affinity (measured
  1.0; the bound leaves room for a differently broken tie)."""
  rng = np.random.default_rng(1)
  img = np.zeros((16, 16, 3), np.float32)
  img[:, :6] = [1, 0, 0]
  img[:, 6:11] = [0, 1, 0]
  img[4:12, 11:] = [0, 0, 1]
  img += rng.normal(0, 0.05, img.shape).astype(np.float32)
  aff = np.asarray(classical.pixel_affinity(img, sigma_colour=0.3, sigma_space=3.0, radius=4.0))
  # The affinity itself, by its formula, for one pair of pixels 2 apart.
  i, j = 0, 2
  want = np.exp(-np.sum((img[0, 0] - img[0, 2]) ** 2) / (2 * 0.3 ** 2) - 4 / (2 * 3.0 ** 2))
  np.testing.assert_allclose(aff[i, j], want, rtol=1e-5)
  labels = np.asarray(jax.jit(classical.spectral_clustering, static_argnums=2)(
      jax.random.key(0), aff, 4))
  ref = SpectralClustering(4, affinity="precomputed", random_state=0).fit(aff.astype(np.float64))
  assert adjusted_rand_score(labels, ref.labels_) >= 0.95


def test_slic_grid_equals_skimage_regular_grid():
  for shape, n in [((64, 64), 100), ((64, 64), 200), ((32, 48), 50), ((20, 30), 7),
                   ((8, 100), 10)]:
    grid = regular_grid((1,) + shape, n)
    want = np.mgrid[:shape[0], :shape[1]][:, grid[1], grid[2]].reshape(2, -1).T
    seeds, spacing = classical.grid_seeds(*shape, n)
    np.testing.assert_array_equal(seeds, want)
    assert spacing == (grid[1].step, grid[2].step)


# Measured on these scenes (pixels with the same label, ARI), 2026-12-03:
# compactness 0.1: 0.952-0.997, 0.952-0.994 (colour dominates, so float32
# rounding breaks near-ties differently); 1: 0.998-1.0, 0.996-1.0; 10: 1.0, 1.0.
@pytest.mark.parametrize("compactness,bound", [(0.1, 0.94), (1.0, 0.99), (10.0, 0.99)])
def test_slic_agrees_with_skimage(scenes, compactness, bound):
  rgb, _, _ = scenes
  fn = jax.jit(classical.slic, static_argnums=(1, 2, 3))
  for img in rgb[:3].astype(np.float32) / 255:
    got = np.asarray(fn(img, 60, compactness, 10))
    want = segmentation.slic(img, 60, compactness, 10, sigma=0, convert2lab=False,
                             enforce_connectivity=False, start_label=0)
    assert (got == want).mean() >= bound
    assert adjusted_rand_score(got.ravel(), want.ravel()) >= bound


def test_bad_inputs_are_named():
  with pytest.raises(ValueError, match=r"expected \[\.\.\., H, W\]"):
    classical.threshold_otsu(np.zeros(5, np.uint8))
  with pytest.raises(ValueError, match="mode='bogus'"):
    classical.gaussian_filter(np.zeros((4, 4)), 1.0, mode="bogus")
  with pytest.raises(ValueError, match="high_threshold=0.1 is below low_threshold=0.2"):
    classical.canny(np.zeros((8, 8), np.float32), 1.0, 0.2, 0.1)
  with pytest.raises(ValueError, match=r"affinity has shape \(3, 4\)"):
    classical.spectral_embedding(np.zeros((3, 4)), 2)
