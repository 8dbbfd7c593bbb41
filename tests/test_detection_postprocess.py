"""Post-processing (threshold, class-aware NMS, top-k) vs a NumPy reference."""
import jax
import numpy as np
import pytest

from visionjax.detection import postprocessing as postprocess


def _np_decode(t, a, v=(0.1, 0.1, 0.2, 0.2)):
  cx = a[:, 0] + t[:, 0] * v[0] * a[:, 2]
  cy = a[:, 1] + t[:, 1] * v[1] * a[:, 3]
  w = a[:, 2] * np.exp(t[:, 2] * v[2])
  h = a[:, 3] * np.exp(t[:, 3] * v[3])
  return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def _np_iou(a, b):
  iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
  ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
  inter = iw * ih
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
  return inter / union if union > 0 else 0.0


def _np_postprocess(logits, offsets, anchors, thr, iou_thr, pre_k, max_det):
  """The DetectionOutput layer, class by class with plain loops."""
  z = logits.astype(np.float64)
  p = np.exp(z - z.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  boxes = np.clip(_np_decode(offsets.astype(np.float64), anchors.astype(np.float64)), 0, 1)
  dets = []
  for c in range(logits.shape[1] - 1):
    s = p[:, c + 1]
    order = [i for i in np.argsort(-s, kind="stable") if s[i] >= thr][:pre_k]
    kept = []
    for i in order:
      if all(_np_iou(boxes[i], boxes[j]) <= iou_thr for j in kept):
        kept.append(i)
    dets += [(s[i], c, boxes[i]) for i in kept]
  dets.sort(key=lambda d: -d[0])
  return dets[:max_det]


def _inputs(seed, a=300, k=4):
  rng = np.random.default_rng(seed)
  # Clustered default boxes so that NMS has a lot to suppress.
  centres = rng.uniform(0.2, 0.8, (6, 2))
  cxcy = centres[rng.integers(0, 6, a)] + rng.normal(0, 0.03, (a, 2))
  anchors = np.concatenate([cxcy, rng.uniform(0.1, 0.3, (a, 2))], -1).astype(np.float32)
  offsets = rng.normal(0, 0.5, (a, 4)).astype(np.float32)
  logits = rng.normal(0, 2, (a, k + 1)).astype(np.float32)
  return logits, offsets, anchors


@pytest.mark.parametrize("thr,iou,pre_k,max_det", [(0.01, 0.45, 400, 200), (0.2, 0.3, 20, 25),
                                                   (0.05, 0.6, 50, 7)])
def test_postprocess_matches_numpy_reference_batched_under_jit(thr, iou, pre_k, max_det):
  batch = [_inputs(s) for s in range(3)]
  logits = np.stack([b[0] for b in batch])
  offsets = np.stack([b[1] for b in batch])
  anchors = batch[0][2]
  fn = jax.jit(lambda l, o: postprocess.batch_postprocess(
      l, o, anchors, score_threshold=thr, iou_threshold=iou, pre_nms_top_k=pre_k,
      max_detections=max_det))
  d = jax.device_get(fn(logits, offsets))
  assert d.boxes.shape == (3, max_det, 4) and d.valid.shape == (3, max_det)
  for b in range(3):
    ref = _np_postprocess(logits[b], offsets[b], anchors, thr, iou, pre_k, max_det)
    n = int(d.valid[b].sum())
    assert n == len(ref), (b, n, len(ref))
    assert np.all(d.valid[b, :n]) and not np.any(d.valid[b, n:])
    np.testing.assert_allclose(d.scores[b, :n], [r[0] for r in ref], rtol=1e-5)
    np.testing.assert_array_equal(d.classes[b, :n], [r[1] for r in ref])
    np.testing.assert_allclose(d.boxes[b, :n], np.array([r[2] for r in ref]).reshape(-1, 4),
                               atol=1e-5)
    np.testing.assert_array_equal(d.classes[b, n:], -1)
    np.testing.assert_array_equal(d.scores[b, n:], 0)


def test_reference_case_suppresses_within_a_class_only():
  # Two identical default boxes, both confident for class 0 and class 1: NMS
  # keeps one box per class (they overlap fully), not one box overall.
  anchors = np.array([[0.5, 0.5, 0.4, 0.4]] * 2, np.float32)
  logits = np.array([[0.0, 5.0, 5.0], [0.0, 4.0, 4.5]], np.float32)
  d = postprocess.postprocess(logits, np.zeros((2, 4), np.float32), anchors, max_detections=4)
  assert int(d.valid.sum()) == 2
  assert sorted(np.asarray(d.classes[:2]).tolist()) == [0, 1]
  np.testing.assert_allclose(d.boxes[0], [0.3, 0.3, 0.7, 0.7], atol=1e-6)


def test_bad_arguments_raise():
  logits, offsets, anchors = _inputs(0, a=10)
  with pytest.raises(ValueError, match="max_detections=0"):
    postprocess.postprocess(logits, offsets, anchors, max_detections=0)
  with pytest.raises(ValueError, match=r"offsets/anchors have shapes \(9, 4\)"):
    postprocess.postprocess(logits, offsets[:9], anchors)
