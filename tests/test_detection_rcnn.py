"""R-CNN box-head post-processing vs torchvision's RoIHeads.postprocess_detections
(and maskrcnn_inference's per-class mask choice) run on CPU."""
import jax
import numpy as np
import pytest

from visionjax.detection import rcnn

torchvision = pytest.importorskip("torchvision")
import torch  # noqa: E402
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_inference  # noqa: E402


def test_postprocess_detections_matches_torchvision():
  rng = np.random.default_rng(0)
  b, p, k, d = 3, 60, 5, 25
  sizes = [(50, 70), (64, 64), (40, 90)]
  xy = rng.uniform(-10, 60, (b, p, 2))
  wh = np.exp(rng.uniform(np.log(2), np.log(40), (b, p, 2)))
  proposals = np.concatenate([xy, xy + wh], -1).astype(np.float32)
  logits = rng.normal(0, 2, (b, p, k)).astype(np.float32)
  deltas = rng.normal(0, 1, (b, p, k * 4)).astype(np.float32)
  deltas[:, ::9, 2::4] = -12.0   # collapsed boxes: removed by min_size
  heads = RoIHeads(None, None, None, 0.5, 0.5, 512, 0.25, None, 0.1, 0.5, d)
  ref_boxes, ref_scores, ref_labels = heads.postprocess_detections(
      torch.tensor(logits.reshape(-1, k)), torch.tensor(deltas.reshape(-1, k * 4)),
      [torch.tensor(x) for x in proposals], sizes)
  out = jax.jit(lambda lg, dl: rcnn.postprocess_detections(
      lg, dl, proposals, np.array(sizes), score_threshold=0.1, nms_threshold=0.5,
      detections_per_image=d))(logits, deltas)
  for i in range(b):
    n = len(ref_boxes[i])
    assert int(out.valid[i].sum()) == n and bool(np.all(out.valid[i][:n]))
    np.testing.assert_array_equal(np.asarray(out.labels[i][:n]), ref_labels[i].numpy())
    np.testing.assert_allclose(np.asarray(out.scores[i][:n]), ref_scores[i].numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out.boxes[i][:n]), ref_boxes[i].numpy(), rtol=1e-5,
                               atol=1e-4)
  assert len(ref_boxes[0]) == d and min(len(x) for x in ref_boxes) > 5
  # The proposal index points at the proposal whose class box was kept.
  prop = np.asarray(out.proposal[0][:3])
  lab = np.asarray(out.labels[0][:3])
  probs = np.exp(logits[0]) / np.exp(logits[0]).sum(-1, keepdims=True)
  np.testing.assert_allclose(probs[prop, lab], np.asarray(out.scores[0][:3]), rtol=1e-5)


def test_select_class_masks_matches_maskrcnn_inference():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(7, 5, 5, 4)).astype(np.float32)     # [N, M, M, K]
  labels = rng.integers(0, 4, 7)
  ref = maskrcnn_inference(torch.tensor(logits).permute(0, 3, 1, 2), [torch.tensor(labels)])
  got = jax.nn.sigmoid(rcnn.select_class_masks(logits, labels))
  np.testing.assert_allclose(np.asarray(got), ref[0][:, 0].numpy(), rtol=1e-6, atol=1e-7)
