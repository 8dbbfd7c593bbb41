"""FPN anchors and RPN proposal generation vs torchvision's AnchorGenerator and
RegionProposalNetwork (box_coder.decode + filter_proposals) run on CPU."""
import jax
from jax.experimental import checkify
import numpy as np
import pytest

from visionjax.detection import proposals as P

torchvision = pytest.importorskip("torchvision")
import torch  # noqa: E402
from torchvision.models.detection.anchor_utils import AnchorGenerator  # noqa: E402
from torchvision.models.detection.image_list import ImageList  # noqa: E402
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead  # noqa: E402

IMAGE = (64, 96)
FEATURES = [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]


def torch_rpn(pre, post, nms_thresh, score_thresh):
  gen = AnchorGenerator(P.FPN_SIZES, P.FPN_ASPECT_RATIOS)
  rpn = RegionProposalNetwork(gen, RPNHead(1, 3), 0.7, 0.3, 256, 0.5,
                              dict(training=pre, testing=pre), dict(training=post, testing=post),
                              nms_thresh, score_thresh=score_thresh)
  return gen, rpn.eval()


def test_fpn_anchors_match_anchor_generator():
  anchors, counts = P.fpn_anchors(IMAGE, FEATURES)
  gen, _ = torch_rpn(10, 10, 0.7, 0.0)
  images = ImageList(torch.zeros(1, 3, *IMAGE), [IMAGE])
  ref = gen(images, [torch.zeros(1, 1, h, w) for h, w in FEATURES])[0].numpy()
  np.testing.assert_array_equal(anchors, ref)
  assert counts == tuple(h * w * 3 for h, w in FEATURES)


# The fixed trip under checkify(vmap) is covered by tests/test_ops_nms.py in
# the default run; this end-to-end version costs another compile (~4 s).
@pytest.mark.parametrize("static_trip_count", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_proposals_match_torchvision_rpn(static_trip_count):
  # One compile covers both regimes: images 0 and 1 have more survivors than
  # post (truncated), image 2's low logits leave fewer (padded rows). The
  # fixed-trip NMS (Mask R-CNN's train step) runs under checkify, as there.
  pre, post, nms_thresh, score_thresh = 50, 30, 0.6, 0.3
  rng = np.random.default_rng(0)
  anchors, counts = P.fpn_anchors(IMAGE, FEATURES)
  b, a = 3, anchors.shape[0]
  deltas = rng.normal(0, 0.5, (b, a, 4)).astype(np.float32)
  deltas[:, ::7, 2:] = -6.0   # collapsed boxes: removed by min_size
  deltas[:, ::11, 2:] = 9.0   # huge boxes: clipped log-size, then clipped to the image
  logits = rng.normal(0, 2, (b, a)).astype(np.float32)
  logits[2] -= 6.0
  # Image contents smaller than the padded batch: boxes clipped to each size.
  sizes = [(60, 90), (64, 70), (33, 96)]
  _, rpn = torch_rpn(pre, post, nms_thresh, score_thresh)
  decoded = rpn.box_coder.decode(torch.tensor(deltas).reshape(-1, 4)[:, None],
                                 [torch.tensor(anchors)] * b).view(b, -1, 4)
  ref_boxes, ref_scores = rpn.filter_proposals(decoded, torch.tensor(logits), sizes, list(counts))
  fn = lambda d, o, s: P.generate_proposals(
      anchors, d, o, s, counts, pre_nms_top_n=pre, post_nms_top_n=post,
      nms_threshold=nms_thresh, score_threshold=score_thresh,
      static_trip_count=static_trip_count)
  if static_trip_count:
    err, out = jax.jit(checkify.checkify(fn))(deltas, logits, np.array(sizes))
    assert err.get() is None
  else:
    out = jax.jit(fn)(deltas, logits, np.array(sizes))
  assert out.boxes.shape == (b, post, 4)
  for i in range(b):
    n = len(ref_boxes[i])
    assert int(out.valid[i].sum()) == n and bool(np.all(out.valid[i][:n]))
    np.testing.assert_allclose(np.asarray(out.boxes[i][:n]), ref_boxes[i].numpy(), rtol=1e-5,
                               atol=1e-4)
    np.testing.assert_allclose(np.asarray(out.scores[i][:n]), ref_scores[i].numpy(), rtol=1e-6)
    assert np.all(np.asarray(out.boxes[i][n:]) == 0)
  assert len(ref_boxes[0]) == post and 5 < len(ref_boxes[2]) < post


def test_decode_boxes_matches_box_coder_with_weights():
  rng = np.random.default_rng(1)
  anchors = np.sort(rng.uniform(0, 100, (50, 2, 2)), axis=1).transpose(0, 2, 1).reshape(50, 4)
  anchors = anchors[:, [0, 1, 2, 3]].astype(np.float32)
  deltas = rng.normal(0, 1, (50, 4)).astype(np.float32)
  coder = torchvision.models.detection._utils.BoxCoder((10.0, 10.0, 5.0, 5.0))
  ref = coder.decode_single(torch.tensor(deltas), torch.tensor(anchors)).numpy()
  got = P.decode_boxes(deltas, anchors, (10.0, 10.0, 5.0, 5.0))
  np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-4)


def test_bad_inputs_name_the_problem():
  anchors, counts = P.fpn_anchors(IMAGE, FEATURES)
  a = anchors.shape[0]
  d, o, s = np.zeros((1, a, 4)), np.zeros((1, a)), np.array([IMAGE])
  with pytest.raises(ValueError, match="sums to"):
    P.generate_proposals(anchors, d, o, s, counts[:-1])
  with pytest.raises(ValueError, match=r"objectness has shape \(1, 5\)"):
    P.generate_proposals(anchors, d, np.zeros((1, 5)), s, counts)
  with pytest.raises(ValueError, match="post_nms_top_n=0"):
    P.generate_proposals(anchors, d, o, s, counts, post_nms_top_n=0)
  with pytest.raises(ValueError, match="weights"):
    P.decode_boxes(d, anchors, (1.0, 0.0, 1.0, 1.0))
