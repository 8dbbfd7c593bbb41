"""Multibox loss and hard-negative mining against a NumPy reference."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from visionjax.detection import multibox


def _np_log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _np_hard_negatives(bg_loss, positive, ratio, min_neg=0):
  """Reference: sort the non-positives by loss (descending, stable), take the first
  min(max(floor(ratio·P), min_neg), #non-positives)."""
  cand = [i for i in np.argsort(-bg_loss, kind="stable") if not positive[i]]
  k = min(max(int(np.floor(ratio * positive.sum())), min_neg), len(cand))
  out = np.zeros(len(bg_loss), bool)
  out[cand[:k]] = True
  return out


def _np_smooth_l1(x):
  ax = np.abs(x)
  return np.where(ax < 1, 0.5 * x * x, ax - 0.5).sum(-1)


def _np_multibox(logits, offsets, labels, target_offsets, ratio=3.0):
  total, n = 0.0, 0
  for b in range(len(logits)):
    ce = -np.take_along_axis(_np_log_softmax(logits[b].astype(np.float64)),
                             labels[b][:, None], -1)[:, 0]
    pos = labels[b] > 0
    neg = _np_hard_negatives(ce, pos, ratio)
    total += ce[pos | neg].sum() + _np_smooth_l1(offsets[b] - target_offsets[b])[pos].sum()
    n += pos.sum()
  return total, n


def _random_batch(seed, b=3, a=50, k=4):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(b, a, k + 1)).astype(np.float32) * 2
  labels = np.where(rng.random((b, a)) < 0.1, rng.integers(1, k + 1, (b, a)), 0).astype(np.int32)
  offsets = rng.normal(size=(b, a, 4)).astype(np.float32)
  targets = rng.normal(size=(b, a, 4)).astype(np.float32)
  return logits, offsets, labels, targets


@pytest.mark.parametrize("ratio,min_neg", [(3.0, 0), (1.5, 0), (3.0, 10)])
def test_hard_negatives_match_numpy_reference(ratio, min_neg):
  rng = np.random.default_rng(1)
  for trial in range(5):
    loss = rng.normal(size=40).astype(np.float32)
    loss[rng.integers(0, 40, 5)] = loss[0]          # ties
    positive = rng.random(40) < [0.0, 0.1, 0.3, 0.6, 0.95][trial]
    got = multibox.hard_negatives(loss, positive, neg_pos_ratio=ratio, min_negatives=min_neg)
    np.testing.assert_array_equal(got, _np_hard_negatives(loss, positive, ratio, min_neg))


def test_mining_ratio_is_three_to_one_and_picks_the_hardest():
  loss = np.arange(20, dtype=np.float32)       # box 19 is the hardest
  positive = np.zeros(20, bool)
  positive[[0, 19]] = True
  neg = np.asarray(multibox.hard_negatives(loss, positive))
  assert neg.sum() == 3 * positive.sum()
  np.testing.assert_array_equal(np.flatnonzero(neg), [13, 14, 15, 16, 17, 18])
  # Not enough negatives: all of them, never a positive.
  positive = np.arange(20) < 15
  neg = np.asarray(multibox.hard_negatives(loss, positive))
  np.testing.assert_array_equal(neg, ~positive)


def test_multibox_loss_matches_numpy_reference_jit():
  logits, offsets, labels, targets = _random_batch(0)
  total, n, parts = jax.jit(multibox.multibox_loss)(logits, offsets, labels, targets)
  ref_total, ref_n = _np_multibox(logits, offsets, labels, targets)
  assert float(n) == ref_n
  np.testing.assert_allclose(float(total), ref_total, rtol=1e-5)
  np.testing.assert_allclose(float(parts.num_neg), 3 * ref_n)
  # Padding images (where=False) drop out of both the sum and N.
  t2, n2, _ = multibox.multibox_loss(logits, offsets, labels, targets,
                                     where=np.array([True, False, True]))
  r2, rn2 = _np_multibox(logits[[0, 2]], offsets[[0, 2]], labels[[0, 2]], targets[[0, 2]])
  np.testing.assert_allclose(float(t2), r2, rtol=1e-5)
  assert float(n2) == rn2


def test_loss_gradients_only_reach_positives_and_mined_negatives():
  logits, offsets, labels, targets = _random_batch(2, b=1)
  g_logits, g_off = jax.grad(lambda l, o: multibox.multibox_loss(l, o, labels, targets)[0],
                             argnums=(0, 1))(logits, offsets)
  ce = -np.take_along_axis(_np_log_softmax(logits[0].astype(np.float64)), labels[0][:, None],
                           -1)[:, 0]
  used = (labels[0] > 0) | _np_hard_negatives(ce, labels[0] > 0, 3.0)
  np.testing.assert_array_equal(np.abs(np.asarray(g_logits[0])).sum(-1) > 0, used)
  np.testing.assert_array_equal(np.abs(np.asarray(g_off[0])).sum(-1) > 0, labels[0] > 0)


def test_shape_errors_name_the_shapes():
  with pytest.raises(ValueError, match=r"expected \[A, K\+1\] and \[A, 4\]"):
    multibox.image_multibox_loss(jnp.zeros((5, 3)), jnp.zeros((4, 4)), jnp.zeros(5, jnp.int32),
                                 jnp.zeros((5, 4)))
