"""Matching ground truth to default boxes, on hand-made cases with known answers."""
import jax
import jax.numpy as jnp
import numpy as np

from visionjax.detection import coding, matching


def _cxcywh(xyxy):
  b = np.asarray(xyxy, np.float32)
  return np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], -1)


# Four default boxes (given as corners, stored as cx, cy, w, h).
ANCHORS = _cxcywh([[0.0, 0.0, 0.5, 0.5],     # a0
                   [0.5, 0.5, 1.0, 1.0],     # a1
                   [0.0, 0.0, 0.4, 0.5],     # a2: IoU 0.8 with a0
                   [0.6, 0.0, 1.0, 0.4]])    # a3


def test_threshold_matches_and_padding_never_matches():
  gt = np.array([[0.0, 0.0, 0.5, 0.5],       # = a0 (IoU 1), a2 IoU 0.8
                 [0.55, 0.55, 0.95, 0.95],   # a1: IoU 0.16 / 0.25 = 0.64
                 [0.6, 0.0, 1.0, 0.4]],      # = a3 but padding
                np.float32)
  m = matching.match(gt, np.array([True, True, False]), ANCHORS)
  np.testing.assert_array_equal(m.index, [0, 1, 0, -1])
  np.testing.assert_allclose(m.iou, [1.0, 0.64, 0.8, 0.0], rtol=1e-6)


def test_every_object_gets_its_best_default_box_even_below_threshold():
  # Only a3 overlaps: IoU = 0.04 / (0.04 + 0.16 - 0.04) = 0.25 < 0.5.
  gt = np.array([[0.8, 0.0, 1.0, 0.2]], np.float32)
  m = matching.match(gt, np.array([True]), ANCHORS)
  np.testing.assert_array_equal(m.index, [-1, -1, -1, 0])
  np.testing.assert_allclose(m.iou[3], 0.25, rtol=1e-6)


def test_forced_match_overrides_a_threshold_match():
  # gt0 overlaps a0 at 0.64 (a0 would go to gt0 by threshold), but a0 is also
  # gt1's best box (IoU 0.36, nothing better), so rule 2 gives a0 to gt1.
  # gt0's own best box is a2 (IoU 0.8), which it keeps.
  gt = np.array([[0.0, 0.0, 0.4, 0.4],       # gt0: a0 0.64, a2 0.8
                 [0.2, 0.2, 0.5, 0.5]],      # gt1: a0 0.36, a2 0.06/0.23 = 0.26
                np.float32)
  m = matching.match(gt, np.array([True, True]), ANCHORS)
  np.testing.assert_array_equal(m.index, [1, -1, 0, -1])
  np.testing.assert_allclose(m.iou[0], 0.36, rtol=1e-6)


def test_shared_best_box_goes_to_the_last_object():
  # Both objects' best box is a1; the later one keeps it (reference loop order),
  # the earlier one is left with nothing else above 0.5.
  gt = np.array([[0.5, 0.5, 0.9, 0.9],       # a1: 0.64
                 [0.6, 0.6, 1.0, 1.0]],      # a1: 0.64
                np.float32)
  m = matching.match(gt, np.array([True, True]), ANCHORS)
  np.testing.assert_array_equal(m.index, [-1, 1, -1, -1])


def test_no_valid_ground_truth_means_all_background():
  gt = np.zeros((3, 4), np.float32)
  m = matching.match(gt, np.zeros(3, bool), ANCHORS)
  np.testing.assert_array_equal(m.index, [-1] * 4)
  t = matching.ssd_targets(gt, np.zeros(3, np.int32), np.zeros(3, bool), ANCHORS)
  np.testing.assert_array_equal(t.labels, [0] * 4)
  np.testing.assert_array_equal(t.offsets, np.zeros((4, 4)))


def test_targets_labels_and_offsets_jit_vmap():
  gt = np.array([[[0.0, 0.0, 0.5, 0.5], [0.55, 0.55, 0.95, 0.95]],
                 [[0.8, 0.0, 1.0, 0.2], [0.0, 0.0, 0.0, 0.0]]], np.float32)
  labels = np.array([[3, 7], [0, 0]], np.int32)
  valid = np.array([[True, True], [True, False]])
  fn = jax.jit(jax.vmap(lambda b, l, v: matching.ssd_targets(b, l, v, ANCHORS)))
  t = fn(gt, labels, valid)
  np.testing.assert_array_equal(t.labels, [[4, 8, 4, 0], [0, 0, 0, 1]])
  np.testing.assert_array_equal(t.positive, t.labels > 0)
  np.testing.assert_allclose(t.offsets[0, 1], coding.encode(gt[0, 1], ANCHORS[1]), rtol=1e-5)
  np.testing.assert_allclose(t.offsets[1, 3], coding.encode(gt[1, 0], ANCHORS[3]), rtol=1e-5)
  np.testing.assert_array_equal(t.offsets[1, :3], np.zeros((3, 4)))
  assert jnp.all(jnp.isfinite(t.offsets))
