"""PSNR/SSIM (visionjax.metrics.image_quality) and the image losses against
scikit-image, and the denoising task's noise.

SSIM must equal ``skimage.metrics.structural_similarity`` to 1e-6 with the
same window, Gaussian weights, covariance normalization, K1/K2, data_range
and border crop, on colour (channel_axis=-1) and single-channel images.
"""
from __future__ import annotations

import jax
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
import tensorflow as tf

from visionjax import losses, tasks
from visionjax.metrics import image_quality


@pytest.fixture(scope="module")
def pair():
  """Clean images with structure (gradients, a disc, texture) and noisy copies."""
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[:40, :44] / 40.0
  clean = np.stack([np.stack([yy * (c + 1) / 3, xx, (yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.1],
                             -1)[..., :3] * 0.8 + 0.1 * rng.uniform(size=(40, 44, 3))
                    for c in range(3)]).astype(np.float32)
  noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
  return clean, noisy


CASES = [
    {},                                                            # skimage's defaults: 7x7 mean
    {"gaussian_weights": True, "use_sample_covariance": False},    # Wang et al. 2004
    {"win_size": 11},
    {"gaussian_weights": True, "sigma": 1.0, "K1": 0.02, "K2": 0.05},
]


@pytest.mark.parametrize("options", CASES, ids=["default", "wang", "win11", "sigma1-k"])
def test_ssim_equals_skimage(pair, options):
  clean, noisy = pair
  mine = {k.lower() if k in ("K1", "K2") else k: v for k, v in options.items()}
  # One jitted call: three colour pairs, and one channel of each on the
  # 0..255 scale (data_range 255).
  fn = jax.jit(lambda a, b: (image_quality.ssim(a, b, 1.0, **mine),
                             image_quality.ssim(a[..., :1] * 255, b[..., :1] * 255, 255.0,
                                                **mine)))
  got, got_gray = (np.asarray(v) for v in fn(noisy, clean))
  c64, n64 = clean.astype(np.float64), noisy.astype(np.float64)
  want = [structural_similarity(c, n, data_range=1.0, channel_axis=-1, **options)
          for c, n in zip(c64, n64)]
  np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
  want = [structural_similarity(c[..., 0] * 255.0, n[..., 0] * 255.0, data_range=255.0,
                                **options) for c, n in zip(c64, n64)]
  np.testing.assert_allclose(got_gray, want, atol=1e-6, rtol=0)


def test_ssim_identity_and_bad_inputs(pair):
  clean, _ = pair
  np.testing.assert_allclose(np.asarray(jax.jit(image_quality.ssim)(clean, clean)), 1.0,
                             atol=1e-6)
  with pytest.raises(ValueError, match="smaller than win_size=11"):
    image_quality.ssim(clean[:, :8, :8], clean[:, :8, :8], gaussian_weights=True)
  with pytest.raises(ValueError, match=r"pred \(2, 40, 44, 3\) and target \(3, 40, 44, 3\)"):
    image_quality.ssim(clean[:2], clean)


def test_psnr_equals_skimage(pair):
  clean, noisy = pair
  got = np.asarray(jax.jit(image_quality.psnr)(noisy, clean))
  want = [peak_signal_noise_ratio(c.astype(np.float64), n.astype(np.float64), data_range=1.0)
          for c, n in zip(clean, noisy)]
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_image_losses(pair):
  clean, noisy = pair
  where = np.array([True, False, True])
  wang = {"gaussian_weights": True, "use_sample_covariance": False}

  @jax.jit
  def all_losses(p, t):
    l1 = losses.l1_loss(p, t)
    l2 = losses.l2_loss(p, t, where=where, reduction="sum_and_count")
    ssim, grad = jax.value_and_grad(lambda x: losses.ssim_loss(x, t, where=where, **wang))(p)
    return l1, l2, ssim, grad

  l1, (l2_sum, l2_count), ssim, grad = jax.device_get(all_losses(noisy, clean))
  np.testing.assert_allclose(l1, np.abs(noisy - clean).mean(), rtol=1e-6)
  sel = where[:, None, None, None]
  np.testing.assert_allclose(l2_sum, np.sum(((noisy - clean) ** 2) * sel), rtol=1e-5)
  assert float(l2_count) == 2 * 40 * 44 * 3
  want = np.mean([1 - structural_similarity(c, x, data_range=1.0, channel_axis=-1, **wang)
                  for c, x, keep in zip(clean.astype(np.float64), noisy.astype(np.float64),
                                        where) if keep])
  np.testing.assert_allclose(ssim, want, atol=1e-6)
  assert np.all(np.isfinite(grad)) and np.abs(grad[where]).sum() > 0
  assert np.all(grad[~where] == 0)  # the masked image gets no gradient


def test_denoising_noise_is_seeded_and_has_its_statistics():
  task = tasks.create("denoising", 10, gaussian_sigma=0.1, salt_pepper=0.2)
  image = tf.constant(np.full((64, 64, 3), 128, np.uint8))
  seed = tf.constant([3, 7], tf.int64)
  a = task.noise(seed, image).numpy()
  np.testing.assert_array_equal(a, task.noise(seed, image).numpy())  # deterministic
  assert not np.array_equal(a, task.noise(tf.constant([3, 8], tf.int64), image).numpy())
  # Evaluation's zero seed: different images still get different noise.
  other = tf.constant(np.full((64, 64, 3), 129, np.uint8))
  zero = tf.zeros([2], tf.int64)
  da = task.noise(zero, image).numpy() - 128 / 255
  db = task.noise(zero, other).numpy() - 129 / 255
  assert np.abs(da - db).mean() > 0.05
  # Salt and pepper: whole pixels at exactly 0 or 1, about 10 % each.
  pepper, salt = np.all(a == 0, -1), np.all(a == 1, -1)
  assert 0.07 < pepper.mean() < 0.13 and 0.07 < salt.mean() < 0.13
  rest = a[~(pepper | salt)] - 128 / 255
  assert abs(rest.std() - 0.1) < 0.01 and abs(rest.mean()) < 0.01
  ex = task.corrupt(seed, {"image": image})
  targets = task.targets(ex)
  np.testing.assert_allclose(targets["clean"].numpy(), 128 / 255)
  np.testing.assert_allclose(targets["noisy"].numpy(), a, atol=1e-6)
