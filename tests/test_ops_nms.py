"""Static-shape NMS / soft-NMS / top-k vs plain NumPy greedy references."""
import jax
from jax.experimental import checkify
from jax_versions import enable_x64
import numpy as np
import pytest

from visionjax import losses, ops


def np_iou(a, b):
  iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = iw * ih
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
  return inter / union if union > 0 else 0.0


def np_greedy_nms(boxes, scores, thr, classes=None):
  """The classic algorithm: visit by score (ties: lower index), keep unless a
  kept box (of the same class) overlaps by more than thr."""
  order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
  kept = []
  for i in order:
    if all(np_iou(boxes[i], boxes[k]) <= thr or
           (classes is not None and classes[i] != classes[k]) for k in kept):
      kept.append(i)
  return kept


def np_soft_nms(boxes, scores, method, sigma, thr, score_thr):
  s = list(map(float, scores))
  live = [i for i in range(len(s)) if s[i] >= score_thr]
  out = []
  while live:
    j = max(live, key=lambda i: (s[i], -i))
    out.append((j, s[j]))
    live.remove(j)
    for i in live:
      o = np_iou(boxes[j], boxes[i])
      if method == "gaussian":
        s[i] *= np.exp(-(o * o) / sigma)
      elif method == "linear":
        s[i] *= (1 - o) if o > thr else 1.0
      else:
        s[i] *= 0.0 if o > thr else 1.0
    live = [i for i in live if s[i] >= score_thr]
  return out


def clustered_boxes(seed, n=60):
  rng = np.random.default_rng(seed)
  centers = rng.uniform(20, 180, (6, 2))
  c = centers[rng.integers(0, 6, n)] + rng.normal(0, 6, (n, 2))
  wh = rng.uniform(15, 40, (n, 2))
  boxes = np.concatenate([c - wh / 2, c + wh / 2], 1)
  scores = np.round(rng.random(n), 1)          # many exact ties
  return boxes, scores


@pytest.mark.parametrize("seed,thr", [(0, 0.3), (1, 0.5), (2, 0.7)])
def test_nms_equals_numpy_greedy_with_ties(seed, thr):
  boxes, scores = clustered_boxes(seed)
  with enable_x64(True):
    idx, ok = jax.jit(lambda b, s: ops.nms(b, s, thr, max_output_size=60))(boxes, scores)
  ref = np_greedy_nms(boxes, scores, thr)
  assert len(set(scores)) < len(scores)         # ties present
  assert 1 < len(ref) < len(scores)
  np.testing.assert_array_equal(np.asarray(idx)[np.asarray(ok)], ref)
  assert np.all(np.asarray(idx)[~np.asarray(ok)] == -1)


def test_nms_truncation_threshold_and_valid_mask():
  boxes, scores = clustered_boxes(3)
  valid = np.arange(60) % 7 != 0
  with enable_x64(True):
    idx, ok = ops.nms(boxes, scores, 0.5, max_output_size=5, score_threshold=0.3, valid=valid)
  keep = np.flatnonzero(valid & (scores >= 0.3))
  ref = [keep[i] for i in np_greedy_nms(boxes[keep], scores[keep], 0.5)][:5]
  np.testing.assert_array_equal(np.asarray(idx)[np.asarray(ok)], ref)
  assert np.asarray(ok).shape == (5,)


def test_nms_hand_case_chain():
  # A overlaps B (IoU 0.6), B overlaps C, A and C barely: B is suppressed by A
  # and therefore cannot suppress C.
  boxes = np.array([[0, 0, 10, 10], [2.5, 0, 12.5, 10], [5, 0, 15, 10]], float)
  idx, ok = ops.nms(boxes, np.array([0.9, 0.8, 0.7]), 0.5)
  assert np.asarray(idx)[np.asarray(ok)].tolist() == [0, 2]


def test_batched_nms_class_aware_and_vmap():
  boxes, scores = clustered_boxes(4)
  classes = np.random.default_rng(0).integers(0, 3, 60)
  with enable_x64(True):
    idx, ok = ops.batched_nms(boxes, scores, classes, 0.4, max_output_size=60)
    ref = np_greedy_nms(boxes, scores, 0.4, classes)
    np.testing.assert_array_equal(np.asarray(idx)[np.asarray(ok)], ref)
    # Per image in a padded batch via vmap == one at a time.
    b2, s2 = clustered_boxes(5)
    bb, ss = np.stack([boxes, b2]), np.stack([scores, s2])
    vi, vo = jax.vmap(lambda b, s: ops.nms(b, s, 0.5, max_output_size=20))(bb, ss)
    for k in range(2):
      ref = np_greedy_nms(bb[k], ss[k], 0.5)[:20]
      np.testing.assert_array_equal(np.asarray(vi[k])[np.asarray(vo[k])], ref)


@pytest.mark.parametrize("method", ["gaussian", "linear", "hard"])
def test_soft_nms_equals_numpy_reference(method):
  boxes, _ = clustered_boxes(6, n=40)
  scores = np.random.default_rng(1).random(40)
  with enable_x64(True):
    idx, sc, ok = jax.jit(lambda b, s: ops.soft_nms(
        b, s, method=method, sigma=0.5, iou_threshold=0.3, score_threshold=0.05,
        max_output_size=40))(boxes, scores)
  ref = np_soft_nms(boxes, scores, method, 0.5, 0.3, 0.05)
  ok = np.asarray(ok)
  assert ok.sum() == len(ref) and len(ref) > 5
  np.testing.assert_array_equal(np.asarray(idx)[ok], [r[0] for r in ref])
  np.testing.assert_allclose(np.asarray(sc)[ok], [r[1] for r in ref], rtol=1e-12)


def test_top_k_ties_and_valid():
  s = np.array([0.5, 0.9, 0.5, 0.1, 0.9, 0.7])
  valid = np.array([1, 1, 1, 1, 0, 1], bool)
  v, i, ok = ops.top_k(s, 4, valid=valid)
  order = [j for j in np.argsort(-s, kind="stable") if valid[j]][:4]
  np.testing.assert_array_equal(i, order)                      # [1, 5, 0, 2]
  np.testing.assert_allclose(v, s[order])
  v, i, ok = jax.jit(lambda s, m: ops.top_k(s, 6, valid=m))(s, valid)
  assert np.asarray(ok).tolist() == [True] * 5 + [False] and int(i[-1]) == -1
  batch = np.stack([s, s[::-1]])
  bv, bi, _ = ops.top_k(batch, 3)
  np.testing.assert_array_equal(bi[1], np.argsort(-s[::-1], kind="stable")[:3])


def test_nms_errors():
  with pytest.raises(ValueError, match=r"scores has shape \(3,\); expected \(4,\)"):
    ops.nms(np.zeros((4, 4)), np.zeros(3))
  with pytest.raises(ValueError, match="boxes has shape"):
    ops.nms(np.zeros((2, 4, 4)), np.zeros(4))
  with pytest.raises(ValueError, match="method='soft'"):
    ops.soft_nms(np.zeros((4, 4)), np.zeros(4), method="soft")


def _three_images(k):
  """Boxes [3, 60, 4], scores, valid: image 0 keeps more than k boxes (truncated),
  image 1 has 6 valid boxes (fewer than k: the early exit stops first), image 2
  half of them (padding)."""
  cases = [clustered_boxes(s) for s in (7, 8, 9)]
  boxes = np.stack([c[0] for c in cases])
  scores = np.stack([c[1] for c in cases])
  valid = np.ones((3, 60), bool)
  valid[1, 6:] = False
  valid[2, ::2] = False
  refs = []
  for b, s, v in zip(boxes, scores, valid):
    keep = np.flatnonzero(v)
    refs.append([keep[i] for i in np_greedy_nms(b[keep], s[keep], 0.5)][:k])
  assert len(refs[0]) == k and len(refs[1]) < k
  return boxes, scores, valid, refs


def test_nms_early_exit_equals_numpy_under_vmap():
  # Under vmap the early-exit loop runs until the last image is done; an image
  # done earlier (image 1) must keep its result. (The fixed-trip form: below.)
  static_trip_count = False
  k = 12
  boxes, scores, valid, refs = _three_images(k)
  f = jax.vmap(lambda b, s, v: ops.nms(b, s, 0.5, max_output_size=k, valid=v,
                                       static_trip_count=static_trip_count))
  with enable_x64(True):
    idx, ok = jax.jit(f)(boxes, scores, valid)
  for i in range(3):
    np.testing.assert_array_equal(np.asarray(idx[i])[np.asarray(ok[i])], refs[i])
    assert np.all(np.asarray(idx[i])[~np.asarray(ok[i])] == -1)
    assert np.asarray(ok[i]).tolist() == [True] * len(refs[i]) + [False] * (k - len(refs[i]))


def test_nms_fixed_trip_under_checkify_of_vmap():
  # The train step's situation (losses.unchecked is checkify): checkify of a
  # vmapped early-exit loop is refused, the fixed-trip form must go through,
  # run its traced-threshold check, and give the greedy result.
  k = 12
  boxes, scores, valid, refs = _three_images(k)
  f = checkify.checkify(jax.vmap(
      lambda b, s, v, t: ops.nms(b, s, t, max_output_size=k, valid=v, static_trip_count=True),
      in_axes=(0, 0, 0, None)))
  with enable_x64(True):
    err, (idx, ok) = jax.jit(f)(boxes, scores, valid, 0.5)
    assert err.get() is None
    for i in range(3):
      np.testing.assert_array_equal(np.asarray(idx[i])[np.asarray(ok[i])], refs[i])
    err, _ = jax.jit(f)(boxes, scores, valid, 1.5)
  assert "iou_threshold must be in [0.0, 1.0]; got 1.5" in err.get()
  unchecked = losses.unchecked(jax.vmap(lambda b, s, v: ops.nms(
      b, s, 0.5, max_output_size=k, valid=v, static_trip_count=True)))
  with enable_x64(True):
    idx, ok = jax.jit(unchecked)(boxes, scores, valid)
  np.testing.assert_array_equal(np.asarray(idx[1])[np.asarray(ok[1])], refs[1])


def test_soft_nms_loop_forms_under_vmap_and_checkify(method="gaussian"):
  # Image 0 has more survivors than k (truncated), image 1 fewer (its low
  # scores fall under the threshold): both loop forms, vmapped, and the
  # fixed one under checkify, equal the NumPy reference.
  k = 10
  boxes = np.stack([clustered_boxes(10, n=40)[0], clustered_boxes(11, n=40)[0]])
  rng = np.random.default_rng(2)
  scores = np.stack([rng.random(40), rng.random(40) * 0.12])
  refs = [np_soft_nms(b, s, method, 0.5, 0.3, 0.1)[:k] for b, s in zip(boxes, scores)]
  assert len(refs[0]) == k and 1 < len(refs[1]) < k

  def one(b, s, fixed):
    return ops.soft_nms(b, s, method=method, sigma=0.5, iou_threshold=0.3, score_threshold=0.1,
                        max_output_size=k, static_trip_count=fixed)

  with enable_x64(True):
    early = jax.jit(jax.vmap(lambda b, s: one(b, s, False)))(boxes, scores)
    err, fixed = jax.jit(checkify.checkify(jax.vmap(lambda b, s: one(b, s, True))))(boxes,
                                                                                  scores)
  assert err.get() is None
  for idx, sc, ok in (early, fixed):
    for i in range(2):
      m = np.asarray(ok[i])
      assert m.tolist() == [True] * len(refs[i]) + [False] * (k - len(refs[i]))
      np.testing.assert_array_equal(np.asarray(idx[i])[m], [r[0] for r in refs[i]])
      np.testing.assert_allclose(np.asarray(sc[i])[m], [r[1] for r in refs[i]], rtol=1e-12)
      assert np.all(np.asarray(idx[i])[~m] == -1) and np.all(np.asarray(sc[i])[~m] == 0)
