"""max_pool_with_indices / max_unpool against a NumPy reference.

The reference below is a direct loop over windows (first maximum in
row-major order wins, PyTorch's `MaxPool2d(return_indices=True)` index
convention `row * W + col`) and a direct loop that writes every pooled value
back at its index. Gradients are checked against what those definitions
imply: pooling sends each cotangent to its argmax, unpooling reads the
cotangent at the index.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from visionjax.ops.pooling import max_pool_with_indices, max_unpool


def np_pool(x, k, s):
  b, h, w, c = x.shape
  ho, wo = (h - k) // s + 1, (w - k) // s + 1
  vals = np.zeros((b, ho, wo, c), x.dtype)
  idx = np.zeros((b, ho, wo, c), np.int64)
  for n in range(b):
    for i in range(ho):
      for j in range(wo):
        for ch in range(c):
          win = x[n, i * s:i * s + k, j * s:j * s + k, ch]
          r, q = np.unravel_index(np.argmax(win), win.shape)
          vals[n, i, j, ch] = win[r, q]
          idx[n, i, j, ch] = (i * s + r) * w + (j * s + q)
  return vals, idx


def np_unpool(vals, idx, h, w):
  b, ho, wo, c = vals.shape
  out = np.zeros((b, h * w, c), vals.dtype)
  for n in range(b):
    for ch in range(c):
      out[n, idx[n, :, :, ch].ravel(), ch] = vals[n, :, :, ch].ravel()
  return out.reshape(b, h, w, c)


CASES = [  # (H, W, window, stride): SegNet's 2×2/2, odd sizes, overlapping.
    (8, 8, 2, 2), (7, 9, 2, 2), (9, 11, 3, 2), (6, 6, 3, 3), (5, 7, 3, 1)]


@pytest.mark.parametrize("h,w,k,s", CASES)
def test_pool_and_unpool_match_numpy(h, w, k, s):
  rng = np.random.default_rng(h * 100 + w + k)
  x = rng.standard_normal((2, h, w, 3)).astype(np.float32)
  ref_vals, ref_idx = np_pool(x, k, s)
  vals, idx = max_pool_with_indices(jnp.asarray(x), k, s)
  np.testing.assert_array_equal(np.asarray(vals), ref_vals)
  np.testing.assert_array_equal(np.asarray(idx), ref_idx)
  # Unpool arbitrary decoder features (not just the pooled values).
  feats = rng.standard_normal(vals.shape).astype(np.float32)
  if k > s:
    # Overlapping windows can pick one position twice with equal value;
    # use the pooled values so the reference's write order cannot matter.
    feats = ref_vals
  out = max_unpool(jnp.asarray(feats), idx, (h, w), k, s)
  np.testing.assert_array_equal(np.asarray(out),
                                np_unpool(feats, ref_idx, h, w))


def test_unpool_puts_values_back_at_exact_positions_hand_checked():
  x = np.array([[1., 5., 0., 2.],
                [3., 2., 7., 1.],
                [0., 0., 1., 1.],
                [4., 0., 1., 2.]], np.float32)[None, :, :, None]
  vals, idx = max_pool_with_indices(jnp.asarray(x))
  np.testing.assert_array_equal(np.asarray(vals)[0, :, :, 0],
                                [[5., 7.], [4., 2.]])
  np.testing.assert_array_equal(np.asarray(idx)[0, :, :, 0],
                                [[1, 6], [12, 15]])
  out = np.asarray(max_unpool(vals, idx, (4, 4)))[0, :, :, 0]
  np.testing.assert_array_equal(out, [[0., 5., 0., 0.],
                                      [0., 0., 7., 0.],
                                      [0., 0., 0., 0.],
                                      [4., 0., 0., 2.]])


@pytest.mark.parametrize("h,w,k,s", [(8, 8, 2, 2), (7, 9, 2, 2),
                                     (9, 11, 3, 2)])
def test_gradients_match_numpy(h, w, k, s):
  rng = np.random.default_rng(7)
  x = rng.standard_normal((2, h, w, 3)).astype(np.float32)
  _, ref_idx = np_pool(x, k, s)
  ho, wo = ref_idx.shape[1:3]
  g_pool = rng.standard_normal((2, ho, wo, 3)).astype(np.float32)
  g_out = rng.standard_normal((2, h, w, 3)).astype(np.float32)

  # d/dx sum(g_pool * pool(x)) = g_pool scattered (added) onto the argmaxes.
  grad_x = jax.grad(lambda a: jnp.sum(max_pool_with_indices(a, k, s)[0]
                                      * g_pool))(jnp.asarray(x))
  ref = np.zeros((2, h * w, 3), np.float32)
  for n in range(2):
    for ch in range(3):
      np.add.at(ref[n, :, ch], ref_idx[n, :, :, ch].ravel(),
                g_pool[n, :, :, ch].ravel())
  np.testing.assert_allclose(np.asarray(grad_x), ref.reshape(x.shape),
                             rtol=1e-6, atol=1e-6)

  # d/dv sum(g_out * unpool(v)) = g_out read at each index.
  idx = jnp.asarray(ref_idx, jnp.int32)
  v = jnp.asarray(rng.standard_normal((2, ho, wo, 3)).astype(np.float32))
  grad_v = jax.grad(lambda a: jnp.sum(max_unpool(a, idx, (h, w), k, s)
                                      * g_out))(v)
  flat = g_out.reshape(2, h * w, 3)
  ref_v = np.stack([np.stack([flat[n, ref_idx[n, :, :, ch], ch]
                              for ch in range(3)], -1) for n in range(2)])
  # Overlapping windows can record one position twice; a set-scatter keeps
  # one of the writes, so only positions recorded once have a defined grad.
  unique = np.ones(ref_idx.shape, bool)
  for n in range(2):
    for ch in range(3):
      vals_, counts = np.unique(ref_idx[n, :, :, ch], return_counts=True)
      dup = vals_[counts > 1]
      unique[n, :, :, ch] = ~np.isin(ref_idx[n, :, :, ch], dup)
  assert unique.mean() > 0.5
  np.testing.assert_allclose(np.asarray(grad_v)[unique], ref_v[unique],
                             rtol=1e-6)


def test_jit_and_bad_input_errors():
  x = jnp.arange(2 * 6 * 6 * 1, dtype=jnp.float32).reshape(2, 6, 6, 1)
  vals, idx = jax.jit(max_pool_with_indices)(x)
  out = jax.jit(max_unpool, static_argnums=2)(vals, idx, (6, 6))
  assert out.shape == x.shape
  with pytest.raises(ValueError, match="rank 4"):
    max_pool_with_indices(x[0])
  with pytest.raises(ValueError, match="indices shape"):
    max_unpool(vals, idx[:, :1], (6, 6))
  with pytest.raises(ValueError, match="does not come from output_size"):
    max_unpool(vals, idx, (9, 9))
