"""R-CNN training targets and losses vs torchvision's own functions on CPU.

The random draws of the samplers differ (JAX keys vs torch.randperm), so the
sampler is tested by its invariants and torch is handed the subset ours
chose (its ``fg_bg_sampler`` replaced by one returning our masks): targets,
matches and loss values are then compared exactly (to float rounding).
"""
import operator

import jax
import numpy as np
import pytest

from visionjax.detection import rcnn_targets as rt
from visionjax.detection.proposals import fpn_anchors
from visionjax.ops import roi_align_indexed

torchvision = pytest.importorskip("torchvision")
import torch  # noqa: E402
from torchvision.models.detection import _utils as det_utils  # noqa: E402
from torchvision.models.detection import roi_heads as tv_roi_heads  # noqa: E402
from torchvision.models.detection.roi_heads import RoIHeads  # noqa: E402
from torchvision.models.detection.rpn import RegionProposalNetwork  # noqa: E402


def boxes_near(rng, centres, n, jitter, lo=4.0, hi=30.0, quantum=None):
  """[n, 4] pixel xyxy boxes around random picks of ``centres`` [C, 4]."""
  base = centres[rng.integers(0, len(centres), n)]
  out = base + rng.normal(0, jitter, (n, 4))
  out[:, 2:] = np.maximum(out[:, 2:], out[:, :2] + lo)
  if quantum:
    out = np.round(out / quantum) * quantum
  return out.astype(np.float32)


def masks_of(sample_index, valid, n):
  m = np.zeros(n, np.uint8)
  m[np.asarray(sample_index)[np.asarray(valid)]] = 1
  return torch.tensor(m)


def test_match_quality_matches_torchvision_matcher():
  rng = np.random.default_rng(0)
  gt = np.array([[10, 10, 30, 40], [12, 8, 36, 30], [50, 50, 60, 70], [200, 200, 210, 210],
                 [0, 0, 1, 1]], np.float32)   # gt 3 overlaps nothing: torch's IoU-0 tie quirk
  preds = np.concatenate([boxes_near(rng, gt[:3], 60, 4.0, quantum=2.0),
                          np.array([[10, 10, 30, 40], [10, 10, 30, 40]], np.float32)])
  iou = torchvision.ops.box_iou(torch.tensor(gt), torch.tensor(preds)).numpy()
  gt_valid = np.array([True, True, True, True, False])
  pred_valid = np.ones(len(preds), bool)
  pred_valid[5:9] = False
  for high, low, allow in [(0.7, 0.3, True), (0.5, 0.5, False), (0.7, 0.3, False),
                           (0.5, 0.5, True)]:
    got = np.asarray(jax.jit(lambda q, h=high, l=low, a=allow: rt.match_quality(
        q, h, l, allow_low_quality_matches=a, gt_valid=gt_valid, pred_valid=pred_valid))(iou))
    ref = det_utils.Matcher(high, low, allow)(
        torch.tensor(iou[gt_valid][:, pred_valid])).numpy()
    np.testing.assert_array_equal(got[pred_valid], ref)
    assert np.all(got[~pred_valid] == rt.BETWEEN_THRESHOLDS)
    assert {0, 1} <= set(got[pred_valid].tolist())
    assert allow or -1 in got[pred_valid]       # (with allow, gt 3 claims all IoU-0 ones)
  # The IoU-0 quirk really happened: with low-quality matches, background
  # predictions that overlap nothing are matched to their argmax gt.
  with_quirk = np.asarray(rt.match_quality(iou[:4], 0.7, 0.3, allow_low_quality_matches=True))
  plain = np.asarray(rt.match_quality(iou[:4], 0.7, 0.3))
  assert np.sum((plain == -1) & (with_quirk >= 0)) >= 5
  # No valid ground truth: every valid prediction is background.
  none = rt.match_quality(iou, 0.7, 0.3, allow_low_quality_matches=True,
                          gt_valid=np.zeros(5, bool))
  assert np.all(np.asarray(none) == -1)


@pytest.mark.parametrize("n_pos,n_neg", [(300, 5000), (20, 5000), (300, 40), (0, 0)])
def test_sample_balanced_invariants(n_pos, n_neg):
  rng = np.random.default_rng(n_pos + n_neg)
  labels = np.full(6000, -1, np.int32)
  perm = rng.permutation(6000)
  labels[perm[:n_pos]] = rng.integers(1, 5, n_pos)
  labels[perm[n_pos:n_pos + n_neg]] = 0
  fn = jax.jit(lambda k, l: rt.sample_balanced(k, l, 256, 0.5))
  s = fn(jax.random.key(0), labels)
  idx, valid, pos = (np.asarray(x) for x in s)
  want_pos = min(n_pos, 128)
  want_neg = min(n_neg, 256 - want_pos)
  assert pos.sum() == want_pos and valid.sum() == want_pos + want_neg
  assert np.all(pos[:want_pos]) and not np.any(pos[want_pos:])       # positives first
  assert np.all(valid[:want_pos + want_neg]) and not np.any(valid[want_pos + want_neg:])
  chosen = idx[valid]
  assert len(set(chosen.tolist())) == len(chosen)                     # no repeats
  assert np.all(labels[idx[pos]] >= 1) and np.all(labels[idx[valid & ~pos]] == 0)
  if n_pos > 128:  # a random subset: another key picks other positives
    other = np.asarray(fn(jax.random.key(1), labels).index)[:want_pos]
    assert set(other.tolist()) != set(idx[:want_pos].tolist())


def torch_rpn(batch_size, fraction):
  return RegionProposalNetwork(None, None, 0.7, 0.3, batch_size, fraction, {"training": 10},
                               {"training": 10}, 0.7)


def test_rpn_targets_and_loss_match_torchvision():
  rng = np.random.default_rng(2)
  anchors, _ = fpn_anchors((64, 64), [(16, 16), (8, 8), (4, 4)], ((16,), (32,), (64,)),
                           ((0.5, 1.0, 2.0),) * 3)
  a = anchors.shape[0]
  b, g = 3, 4
  gt = np.zeros((b, g, 4), np.float32)
  gt_valid = np.zeros((b, g), bool)
  gt[0, :3] = [[4, 6, 30, 28], [30, 30, 60, 62], [10, 40, 22, 52]]
  gt_valid[0, :3] = True
  gt[1, :1] = [[2, 2, 62, 60]]
  gt_valid[1, :1] = True              # image 2: no objects at all
  objectness = rng.normal(0, 2, (b, a)).astype(np.float32)
  deltas = rng.normal(0, 0.5, (b, a, 4)).astype(np.float32)
  out = jax.jit(lambda k, o, d: rt.rpn_loss(k, o, d, anchors, gt, gt_valid,
                                            batch_size_per_image=64))(
      jax.random.key(3), objectness, deltas)
  rpn = torch_rpn(64, 0.5)
  targets = [{"boxes": torch.tensor(gt[i][gt_valid[i]])} for i in range(b)]
  labels, matched = rpn.assign_targets_to_anchors([torch.tensor(anchors)] * b, targets)
  reg = rpn.box_coder.encode(matched, [torch.tensor(anchors)] * b)
  for i in range(b):
    np.testing.assert_array_equal(np.asarray(out.targets.labels[i]), labels[i].numpy())
    pos = labels[i].numpy() == 1
    np.testing.assert_allclose(np.asarray(out.targets.deltas[i])[pos],
                               reg[i][pos].numpy(), rtol=1e-5, atol=1e-5)
  assert sum(int((x == 1).sum()) for x in labels) >= 4   # >= 1 per object
  s = out.sample
  rpn.fg_bg_sampler = lambda _: (
      [masks_of(s.index[i], s.positive[i], a) for i in range(b)],
      [masks_of(s.index[i], s.valid[i] & ~s.positive[i], a) for i in range(b)])
  t_obj = torch.tensor(objectness.reshape(-1, 1), requires_grad=True)
  t_del = torch.tensor(deltas.reshape(-1, 4), requires_grad=True)
  ref_obj, ref_box = rpn.compute_loss(t_obj, t_del, labels, reg)
  assert float(out.count) == 3 * 64
  np.testing.assert_allclose(float(out.objectness / out.count), ref_obj.item(), rtol=1e-5)
  np.testing.assert_allclose(float(out.box / out.count), ref_box.item(), rtol=1e-5)
  assert ref_box.item() > 0
  # Gradients of the total with respect to the RPN outputs, as torch autograd's.
  (ref_obj + ref_box).backward()

  def total(o, d):
    parts = rt.rpn_loss(jax.random.key(3), o, d, anchors, gt, gt_valid, batch_size_per_image=64)
    return (parts.objectness + parts.box) / parts.count

  g_obj, g_del = jax.jit(jax.grad(total, argnums=(0, 1)))(objectness, deltas)
  np.testing.assert_allclose(np.asarray(g_obj).reshape(-1), t_obj.grad.numpy().reshape(-1),
                             rtol=1e-5, atol=1e-8)
  np.testing.assert_allclose(np.asarray(g_del).reshape(-1, 4), t_del.grad.numpy(), rtol=1e-5,
                             atol=1e-8)


def roi_case(rng, b=3, p=70, g=5):
  """Padded proposals/ground truth: proposals valid first, then padding; the
  third image has no objects (all its RoIs background)."""
  props = np.zeros((b, p, 4), np.float32)
  pvalid = np.zeros((b, p), bool)
  gt = np.zeros((b, g, 4), np.float32)
  gvalid = np.zeros((b, g), bool)
  labels = np.zeros((b, g), np.int32)
  for i, (ng, npv) in enumerate([(4, 60), (2, 45), (0, 30)][:b]):
    if ng == 0:
      xy = rng.uniform(0, 40, (npv, 2))
      props[i, :npv] = np.concatenate([xy, xy + rng.uniform(4, 20, (npv, 2))], 1)
      pvalid[i, :npv] = True
      continue
    xy = rng.uniform(0, 40, (ng, 2))
    gt[i, :ng] = np.concatenate([xy, xy + rng.uniform(8, 24, (ng, 2))], 1)
    gvalid[i, :ng] = True
    labels[i, :ng] = rng.integers(1, 4, ng)
    props[i, :npv] = boxes_near(rng, gt[i, :ng], npv, 4.0 if i == 0 else 8.0)
    pvalid[i, :npv] = True
  props[~pvalid] = 1e4  # padding far away (must be ignored anyway)
  return props, pvalid, gt, gvalid, labels


def to_torch_index(p, pvalid_i, gvalid_i):
  """Our index into [P + G] (padded) -> torch's into [P_valid + G_valid]."""
  npv = int(pvalid_i.sum())
  m = np.full(p + len(gvalid_i), -1)
  m[:npv] = np.arange(npv)
  m[p:p + int(gvalid_i.sum())] = npv + np.arange(int(gvalid_i.sum()))
  return m


def test_sample_rois_and_fastrcnn_loss_match_torchvision():
  rng = np.random.default_rng(4)
  props, pvalid, gt, gvalid, gl = roi_case(rng)
  b, p, _ = props.shape
  k, s_size = 4, 32
  rois = jax.jit(lambda key: rt.sample_rois(key, props, pvalid, gt, gl, gvalid,
                                            batch_size_per_image=s_size))(jax.random.key(5))
  heads = RoIHeads(None, None, None, 0.5, 0.5, s_size, 0.25, None, 0.05, 0.5, 100)
  targets = [{"boxes": torch.tensor(gt[i][gvalid[i]]),
              "labels": torch.tensor(gl[i][gvalid[i]]).long()} for i in range(b)]
  plist = [torch.tensor(props[i][pvalid[i]]) for i in range(b)]
  # Our sampled slots in torch's index space (the sampler's choice handed over).
  maps = [to_torch_index(p, pvalid[i], gvalid[i]) for i in range(b)]
  # Recover each slot's index into [P + G] from its box (boxes are distinct).
  allb = [np.concatenate([props[i], gt[i]]) for i in range(b)]
  slot_idx = [np.array([np.flatnonzero(np.all(allb[i] == bx, 1))[0] for bx in
                        np.asarray(rois.boxes[i])]) for i in range(b)]
  tidx = [maps[i][slot_idx[i]] for i in range(b)]
  n_t = [len(x) + int(gvalid[i].sum()) for i, x in enumerate(plist)]
  valid = np.asarray(rois.valid)
  pos = np.asarray(rois.positive)
  heads.fg_bg_sampler = lambda _: ([masks_of(tidx[i], pos[i], n_t[i]) for i in range(b)],
                                   [masks_of(tidx[i], valid[i] & ~pos[i], n_t[i])
                                    for i in range(b)])
  t_props, t_matched, t_labels, t_reg = heads.select_training_samples(plist, targets)
  logits = rng.normal(0, 2, (b, s_size, k)).astype(np.float32)
  deltas = rng.normal(0, 0.5, (b, s_size, k * 4)).astype(np.float32)
  t_logits, t_deltas = [], []
  for i in range(b):
    order = np.argsort(np.where(valid[i], tidx[i], 10 ** 6))[:int(valid[i].sum())]
    assert np.all(tidx[i][order] == np.sort(tidx[i][valid[i]]))
    np.testing.assert_array_equal(np.asarray(rois.boxes[i])[order], t_props[i].numpy())
    np.testing.assert_array_equal(np.asarray(rois.labels[i])[order], t_labels[i].numpy())
    pos_o = pos[i][order]
    np.testing.assert_array_equal(np.asarray(rois.matches[i])[order][pos_o],
                                  t_matched[i].numpy()[pos_o])
    np.testing.assert_allclose(np.asarray(rois.deltas[i])[order][pos_o],
                               t_reg[i].numpy()[pos_o], rtol=1e-5, atol=1e-4)
    t_logits.append(logits[i][order])
    t_deltas.append(deltas[i][order])
  assert pos[0].sum() == 8 and 0 < pos[1].sum() < 8   # the cap binds in image 0 only
  assert pos[2].sum() == 0 and valid[2].sum() == 30    # no objects: 30 background RoIs
  assert np.asarray(rois.positive[:, 8:]).sum() == 0
  # torch's own labelling of every candidate (not only the sampled) agrees too.
  m_idx, m_lab = heads.assign_targets_to_proposals(
      [torch.cat([x, t["boxes"]]) for x, t in zip(plist, targets)],
      [t["boxes"] for t in targets], [t["labels"] for t in targets])
  got = jax.jit(lambda key: rt.sample_rois(key, props, pvalid, gt, gl, gvalid,
                                           batch_size_per_image=2 * (p + 5),
                                           positive_fraction=1.0))(jax.random.key(0))
  for i in range(b):
    ours = dict(zip(maps[i][np.asarray(slot_of_all(got, allb, i))],
                    np.asarray(got.labels[i])[np.asarray(got.valid[i])]))
    ref = m_lab[i].numpy()
    assert {j: int(ref[j]) for j in range(len(ref)) if ref[j] >= 0} == \
        {int(j): int(v) for j, v in ours.items()}
  loss = jax.jit(rt.fastrcnn_loss)(logits, deltas, rois)
  tl = torch.tensor(np.concatenate(t_logits), requires_grad=True)
  td = torch.tensor(np.concatenate(t_deltas), requires_grad=True)
  ref_cls, ref_box = tv_roi_heads.fastrcnn_loss(tl, td, t_labels, t_reg)
  assert float(loss.count) == valid.sum()
  np.testing.assert_allclose(float(loss.classification / loss.count), ref_cls.item(), rtol=1e-5)
  np.testing.assert_allclose(float(loss.box / loss.count), ref_box.item(), rtol=1e-5)
  (ref_cls + ref_box).backward()
  g_l, g_d = jax.jit(jax.grad(lambda lg, dl: sum_over_count(rt.fastrcnn_loss(lg, dl, rois)),
                              argnums=(0, 1)))(logits, deltas)
  start = 0
  for i in range(b):
    order = np.argsort(np.where(valid[i], tidx[i], 10 ** 6))[:int(valid[i].sum())]
    n = len(order)
    np.testing.assert_allclose(np.asarray(g_l[i])[order], tl.grad[start:start + n].numpy(),
                               rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(np.asarray(g_d[i])[order], td.grad[start:start + n].numpy(),
                               rtol=1e-5, atol=1e-8)
    assert np.all(np.asarray(g_l[i])[~valid[i]] == 0)
    start += n


def sum_over_count(parts):
  return (parts.classification + parts.box) / parts.count


def slot_of_all(sample, allb, i):
  v = np.asarray(sample.valid[i])
  return [np.flatnonzero(np.all(allb[i] == bx, 1))[0] for bx in np.asarray(sample.boxes[i])[v]]


def test_roi_align_indexed_matches_torchvision():
  rng = np.random.default_rng(6)
  maps = rng.normal(size=(2, 3, 12, 10, 2)).astype(np.float32)
  xy = rng.uniform(-3, 10, (2, 9, 2))
  boxes = np.concatenate([xy, xy + rng.uniform(0.5, 9, (2, 9, 2))], -1).astype(np.float32)
  index = rng.integers(0, 3, (2, 9))
  for kw in [dict(sampling_ratio=-1, aligned=False), dict(sampling_ratio=2, aligned=True)]:
    got = jax.jit(lambda m, bx, ix, kw=kw: roi_align_indexed(m, bx, ix, (4, 5), **kw))(
        maps, boxes, index)
    for i in range(2):
      rois = torch.tensor(np.concatenate([index[i][:, None], boxes[i]], 1).astype(np.float32))
      ref = torchvision.ops.roi_align(torch.tensor(maps[i]).permute(0, 3, 1, 2), rois, (4, 5),
                                      1.0, **kw)
      np.testing.assert_allclose(np.asarray(got[i]), ref.permute(0, 2, 3, 1).numpy(),
                                 rtol=1e-5, atol=1e-6)


def test_mask_targets_and_loss_match_torchvision():
  rng = np.random.default_rng(7)
  props, pvalid, gt, gvalid, gl = roi_case(rng)
  b, g = gl.shape
  h = w = 64
  yy, xx = np.mgrid[:h, :w]
  gt_masks = np.zeros((b, g, h, w), np.uint8)
  for i in range(b):
    for j in range(g):
      x1, y1, x2, y2 = gt[i, j]
      cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
      gt_masks[i, j] = (((xx - cx) / max(x2 - x1, 1)) ** 2 +
                        ((yy - cy) / max(y2 - y1, 1)) ** 2 < 0.2) * gvalid[i, j]
  rois = jax.jit(lambda key: rt.sample_rois(key, props, pvalid, gt, gl, gvalid,
                                            batch_size_per_image=32))(jax.random.key(8))
  m, k = 14, 4
  r = 8   # the positives' slots (int(32 · 0.25))
  boxes, matches, pos, labels = (x[:, :r] for x in (rois.boxes, rois.matches, rois.positive,
                                                    rois.labels))
  targets = jax.jit(lambda gm: rt.mask_targets(gm, boxes, matches, pos, m))(gt_masks)
  logits = rng.normal(0, 2, (b, r, m, m, k)).astype(np.float32)
  sum_, count = jax.jit(rt.maskrcnn_loss)(logits, labels, targets, pos)
  pos = np.asarray(pos)
  t_logits, t_props, t_masks, t_labels, t_idx = [], [], [], [], []
  for i in range(b):
    sel = pos[i]
    ref = tv_roi_heads.project_masks_on_boxes(
        torch.tensor(gt_masks[i]), torch.tensor(np.asarray(boxes[i])[sel]),
        torch.tensor(np.asarray(matches[i])[sel]), m)
    np.testing.assert_allclose(np.asarray(targets[i])[sel], ref.numpy(), rtol=1e-5, atol=2e-5)
    assert np.all(np.asarray(targets[i])[~sel] == 0)
    t_logits.append(logits[i][sel])
    t_props.append(torch.tensor(np.asarray(boxes[i])[sel]))
    t_masks.append(torch.tensor(gt_masks[i]))
    t_labels.append(torch.tensor(gl[i]).long())
    t_idx.append(torch.tensor(np.asarray(matches[i])[sel]))
  assert 0.05 < float(np.asarray(targets)[pos].mean()) < 0.95
  tl = torch.tensor(np.concatenate(t_logits), requires_grad=True)
  ref_loss = tv_roi_heads.maskrcnn_loss(tl.permute(0, 3, 1, 2), t_props, t_masks, t_labels,
                                        t_idx)
  assert float(count) == pos.sum() * m * m
  np.testing.assert_allclose(float(sum_ / count), ref_loss.item(), rtol=1e-5)
  ref_loss.backward()
  mean = lambda lg: operator.truediv(*rt.maskrcnn_loss(lg, labels, targets, pos))
  grad = jax.jit(jax.grad(mean))(logits)
  # d/dz = (sigmoid(z) - t) / count: the targets' 2e-5 tolerance, over count.
  np.testing.assert_allclose(np.asarray(grad)[pos], tl.grad.numpy(), rtol=1e-5,
                             atol=2e-5 / float(count))
  assert np.all(np.asarray(grad)[~pos] == 0)




def test_bad_inputs_name_the_problem():
  with pytest.raises(ValueError, match="low_threshold=0.7 > high_threshold=0.3"):
    rt.match_quality(np.zeros((2, 3)), 0.3, 0.7)
  with pytest.raises(ValueError, match="gt_valid"):
    rt.match_quality(np.zeros((2, 3)), 0.7, 0.3, gt_valid=np.ones(3, bool))
  with pytest.raises(ValueError, match="batch_size_per_image=0"):
    rt.sample_balanced(jax.random.key(0), np.zeros(5, np.int32), 0, 0.5)
  with pytest.raises(ValueError, match="positive_fraction=1.5"):
    rt.sample_balanced(jax.random.key(0), np.zeros(5, np.int32), 4, 1.5)
  with pytest.raises(ValueError, match=r"anchors has shape \(7, 4\)"):
    rt.rpn_loss(jax.random.key(0), np.zeros((1, 6)), np.zeros((1, 6, 4)), np.zeros((7, 4)),
                np.zeros((1, 2, 4)), np.ones((1, 2), bool))
  with pytest.raises(ValueError, match=r"gt_labels has shape \(1, 3\)"):
    rt.sample_rois(jax.random.key(0), np.zeros((1, 6, 4)), np.ones((1, 6), bool),
                   np.zeros((1, 2, 4)), np.ones((1, 3), np.int32), np.ones((1, 2), bool))
  rois = rt.RoISample(np.zeros((1, 4, 4)), np.zeros((1, 4), np.int32), np.zeros((1, 4), np.int32),
                      np.zeros((1, 4, 4)), np.ones((1, 4), bool), np.zeros((1, 4), bool))
  with pytest.raises(ValueError, match=r"box_deltas has shape \(1, 4, 3, 4\)"):
    rt.fastrcnn_loss(np.zeros((1, 4, 5)), np.zeros((1, 4, 3, 4)), rois)
  with pytest.raises(ValueError, match="mask_logits"):
    rt.maskrcnn_loss(np.zeros((1, 4, 7, 7)), np.zeros((1, 4), np.int32), np.zeros((1, 4, 7, 7)),
                     np.ones((1, 4), bool))
  with pytest.raises(ValueError, match="index has shape"):
    roi_align_indexed(np.zeros((1, 2, 8, 8, 1)), np.zeros((1, 3, 4)), np.zeros((1, 3)), 4)
