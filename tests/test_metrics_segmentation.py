"""Segmentation metrics vs scikit-learn, the official Cityscapes evaluation
(cityscapesscripts) and hand-checked cases; streaming state merged across
devices with pmap/psum and with jit over a sharded batch."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

from visionjax.metrics import segmentation as seg

C = 6


def random_maps(seed, shape=(4, 16, 24), c=C, ignore_frac=0.1):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, c, shape)
  labels[rng.random(shape) < ignore_frac] = 255
  preds = np.where(rng.random(shape) < 0.6, labels % c, rng.integers(0, c, shape))
  return labels.astype(np.int32), preds.astype(np.int32)


def test_confusion_matrix_equals_sklearn_under_jit():
  labels, preds = random_maps(0)
  cm = jax.jit(lambda l, p: seg.confusion_matrix(l, p, C))(labels, preds)
  valid = labels != 255
  ref = skm.confusion_matrix(labels[valid], preds[valid], labels=np.arange(C))
  np.testing.assert_array_equal(np.asarray(cm), ref)
  assert cm.dtype == jnp.int32


def test_mask_with_leading_batch_dim_and_full_shape():
  labels, preds = random_maps(1)
  example_mask = np.array([1, 0, 1, 1], bool)     # example 1 is padding
  cm = seg.confusion_matrix(labels, preds, C, mask=example_mask)
  keep = (labels != 255) & example_mask[:, None, None]
  ref = skm.confusion_matrix(labels[keep], preds[keep], labels=np.arange(C))
  np.testing.assert_array_equal(np.asarray(cm), ref)
  pix_mask = np.random.default_rng(0).random(labels.shape) < 0.5
  cm2 = seg.confusion_matrix(labels, preds, C, mask=pix_mask)
  keep = (labels != 255) & pix_mask
  np.testing.assert_array_equal(np.asarray(cm2), skm.confusion_matrix(
      labels[keep], preds[keep], labels=np.arange(C)))


def test_out_of_range_predictions_dropped_or_void_column():
  labels = np.array([[0, 1, 2, 255]])
  preds = np.array([[0, 7, 2, 1]])
  cm = np.asarray(seg.confusion_matrix(labels, preds, 3))
  assert cm.sum() == 2 and cm[0, 0] == 1 and cm[2, 2] == 1
  cmv = np.asarray(seg.confusion_matrix(labels, preds, 3, void_column=True))
  assert cmv.shape == (3, 4) and cmv[1, 3] == 1 and cmv.sum() == 3
  s = seg.segmentation_scores(cmv)
  assert s["iou_per_class"][1] == 0.0          # class 1 only missed (void prediction)
  assert s["pixel_accuracy"] == pytest.approx(2 / 3)


def test_scores_equal_sklearn_on_random_maps():
  labels, preds = random_maps(2, c=C)
  labels[labels == 4] = 3                       # class 4 absent from ground truth...
  preds[preds == 5] = 0                         # ...and class 5 absent from predictions
  labels[labels == 5] = 0                       # class 5 absent from both -> NaN
  valid = labels != 255
  y, p = labels[valid], preds[valid]
  s = seg.segmentation_scores(seg.confusion_matrix(labels, preds, C))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    iou = skm.jaccard_score(y, p, labels=np.arange(C), average=None, zero_division=0)
    dice = skm.f1_score(y, p, labels=np.arange(C), average=None, zero_division=0)
    bal = skm.balanced_accuracy_score(y, p)
  # sklearn reports 0 for a class absent from both; the metric excludes it.
  absent = ~np.isin(np.arange(C), np.concatenate([y, p]))
  iou[absent] = dice[absent] = np.nan
  assert np.isnan(iou[5]) and iou[4] == 0.0
  np.testing.assert_allclose(s["iou_per_class"], iou, atol=1e-12)
  np.testing.assert_allclose(s["dice_per_class"], dice, atol=1e-12)
  assert s["miou"] == pytest.approx(np.nanmean(iou), abs=1e-12)
  assert s["mean_dice"] == pytest.approx(np.nanmean(dice), abs=1e-12)
  assert s["pixel_accuracy"] == pytest.approx(skm.accuracy_score(y, p), abs=1e-12)
  assert s["mean_pixel_accuracy"] == pytest.approx(bal, abs=1e-12)
  freq = np.bincount(y, minlength=C) / y.size
  present = freq > 0
  assert s["fwiou"] == pytest.approx(np.sum(freq[present] * iou[present]), abs=1e-12)


def test_scores_hand_computed():
  # rows = gt, cols = pred. Class 2 absent from both; class 3 only predicted.
  cm = np.array([[3, 1, 0, 0],
                 [0, 2, 0, 2],
                 [0, 0, 0, 0],
                 [0, 0, 0, 0]])
  s = seg.segmentation_scores(cm)
  assert s["pixel_accuracy"] == pytest.approx(5 / 8)
  np.testing.assert_allclose(s["iou_per_class"], [3 / 4, 2 / 5, np.nan, 0.0])
  assert s["miou"] == pytest.approx((3 / 4 + 2 / 5 + 0) / 3)
  np.testing.assert_allclose(s["dice_per_class"], [6 / 7, 4 / 7, np.nan, 0.0])
  assert s["mean_pixel_accuracy"] == pytest.approx((3 / 4 + 2 / 4) / 2)
  assert s["fwiou"] == pytest.approx(0.5 * 3 / 4 + 0.5 * 2 / 5)


def test_pmap_psum_merges_device_states():
  n = jax.local_device_count()
  labels, preds = random_maps(3, shape=(n, 2, 8, 8))
  # Each device counts its shard; psum merges the count pytrees by addition.
  step = jax.pmap(lambda s, l, p: jax.lax.psum(seg.update_state(s, l, p), "i"), axis_name="i")
  states = jnp.zeros((n, C, C), jnp.int32)
  merged = step(states, labels, preds)
  valid = labels != 255
  ref = skm.confusion_matrix(labels[valid], preds[valid], labels=np.arange(C))
  for d in range(n):
    np.testing.assert_array_equal(np.asarray(merged[d]), ref)


def test_jit_over_sharded_batch_and_streaming_sum():
  from jax.sharding import Mesh, NamedSharding
  from jax.sharding import PartitionSpec as P
  mesh = Mesh(np.array(jax.devices()), ("data",))
  sharding = NamedSharding(mesh, P("data"))
  n = len(jax.devices())
  total = seg.init_state(C)
  ref = np.zeros((C, C), np.int64)
  update = jax.jit(seg.update_state)
  for b in range(3):                                  # three eval batches
    labels, preds = random_maps(10 + b, shape=(n, 8, 8))
    l = jax.device_put(labels, sharding)
    p = jax.device_put(preds, sharding)
    total = update(total, l, p)
    valid = labels != 255
    ref += skm.confusion_matrix(labels[valid], preds[valid], labels=np.arange(C))
  np.testing.assert_array_equal(np.asarray(total), ref)


def test_bad_inputs_raise_clear_errors():
  with pytest.raises(ValueError, match="preds has shape"):
    seg.confusion_matrix(np.zeros((2, 3), int), np.zeros((2, 4), int), 3)
  with pytest.raises(TypeError, match="labels has dtype float"):
    seg.confusion_matrix(np.zeros((2, 3)), np.zeros((2, 3), int), 3)
  with pytest.raises(ValueError, match="mask has shape"):
    seg.confusion_matrix(np.zeros((2, 3), int), np.zeros((2, 3), int), 3, mask=np.ones(4))
  with pytest.raises(ValueError, match="num_classes"):
    seg.confusion_matrix(np.zeros((2, 3), int), np.zeros((2, 3), int), 0)
  with pytest.raises(ValueError, match="cm has shape"):
    seg.segmentation_scores(np.zeros((3, 5)))


def test_equals_official_cityscapes_evaluation(tmp_path, monkeypatch):
  pytest.importorskip("cityscapesscripts")
  from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs
  from cityscapesscripts.helpers.labels import labels as cs_labels
  from PIL import Image

  rng = np.random.default_rng(0)
  ids = [l.id for l in cs_labels if l.id >= 0]
  eval_ids = [l.id for l in cs_labels if l.id >= 0 and not l.ignoreInEval]
  lut = np.full(256, 255, np.int32)
  for l in cs_labels:
    if l.id >= 0 and not l.ignoreInEval:
      lut[l.id] = l.trainId
  gt_files, pred_files = [], []
  state = seg.init_state(19, void_column=True)
  for i in range(3):
    h, w = 32, 64
    gt = rng.choice(ids, (h, w)).astype(np.uint8)
    gt[gt == eval_ids[5]] = eval_ids[4]       # one evaluated class never in gt ...
    pred = np.where(rng.random((h, w)) < 0.5, gt, rng.choice(ids, (h, w))).astype(np.uint8)
    pred[pred == eval_ids[5]] = eval_ids[4]   # ... nor predicted: NaN, excluded from mean
    gt_f = tmp_path / f"city_{i:03d}_gtFine_labelIds.png"
    pred_f = tmp_path / f"city_{i:03d}_pred.png"
    Image.fromarray(gt).save(gt_f)
    Image.fromarray(pred).save(pred_f)
    gt_files.append(str(gt_f))
    pred_files.append(str(pred_f))
    # Void predictions (non-evaluated label ids) become an out-of-range id, so
    # they land in the void column = false negatives, as in cityscapes.
    pred_train = np.where(lut[pred] == 255, 19, lut[pred])
    state = state + np.asarray(seg.confusion_matrix(lut[gt][None], pred_train[None], 19,
                                                    void_column=True))
  # The module keeps its options in a global `args`; patch it for this test only.
  for name, value in (("evalInstLevelScore", False), ("JSONOutput", False), ("quiet", True),
                      ("evalPixelAccuracy", False)):
    monkeypatch.setattr(cs.args, name, value)
  result = cs.evaluateImgLists(pred_files, gt_files, cs.args)
  ours = seg.segmentation_scores(state)
  by_train = {l.trainId: l.name for l in cs_labels if l.id >= 0 and not l.ignoreInEval}
  ref_iou = np.array([result["classScores"][by_train[t]] for t in range(19)])
  assert np.isnan(ref_iou[5])
  np.testing.assert_allclose(ours["iou_per_class"], ref_iou, rtol=0, atol=1e-12)
  assert ours["miou"] == pytest.approx(result["averageScoreClasses"], abs=1e-12)
  # Their full labelId confusion matrix restricted to evaluated ids equals ours.
  ref_cm = np.array(result["confMatrix"])[np.ix_(eval_ids, eval_ids)]
  order = np.argsort([lut[i] for i in eval_ids])
  np.testing.assert_array_equal(state[:, :19], ref_cm[np.ix_(order, order)])
