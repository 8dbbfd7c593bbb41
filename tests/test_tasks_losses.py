"""Task losses against NumPy written from the formulas."""
import jax.numpy as jnp
import numpy as np
import pytest

from visionjax import tasks


def _np_softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("fg,dice", [(1.0, 0.0), (3.0, 0.0), (2.0, 0.5)])
def test_segmentation_loss_is_weighted_ce_plus_per_image_dice(fg, dice):
  rng = np.random.default_rng(0)
  b, h, w, c = 3, 5, 4, 4
  logits = rng.standard_normal((b, h, w, c)).astype(np.float32) * 2
  mask = rng.integers(0, c, (b, h, w))
  valid = np.array([True, True, False])  # the last image is eval padding
  task = tasks.SegmentationTask(num_classes=c, foreground_weight=fg, dice_weight=dice)
  loss_sum, count = task.loss(jnp.asarray(logits),
                              {"mask": jnp.asarray(mask), "valid": jnp.asarray(valid)})
  p = _np_softmax(logits.astype(np.float64))
  nll = -np.log(np.take_along_axis(p, mask[..., None], -1)[..., 0])
  weight = np.where(mask == 0, 1.0, fg)
  ce = (nll * weight)[valid].sum()
  n_pix = valid.sum() * h * w
  onehot = np.eye(c)[mask]
  dice_img = []
  for i in np.flatnonzero(valid):
    inter = (p[i] * onehot[i]).sum((0, 1))
    score = (2 * inter + 1) / (p[i].sum((0, 1)) + onehot[i].sum((0, 1)) + 1)
    dice_img.append(np.mean(1 - score))
  expected = ce / n_pix + dice * np.mean(dice_img)
  assert float(count) == n_pix
  np.testing.assert_allclose(float(loss_sum) / float(count), expected, rtol=1e-5)


def test_deep_supervision_loss_is_block_ce_against_the_class_histogram():
  """Each coarse head at stride s adds, per s x s block, the block's weighted
  cross-entropy against the block's class counts (ignored pixels excluded),
  written here with NumPy histograms, not by up-sampling as the task does.
  Odd sizes (7 x 6 at strides 4 and 2) check the cropped last blocks."""
  rng = np.random.default_rng(1)
  b, h, w, c, fg, aux_w = 2, 7, 6, 3, 2.0, 0.4
  logits = rng.standard_normal((b, h, w, c)).astype(np.float32)
  mask = rng.integers(0, c, (b, h, w))
  mask[0, 0, :3] = 255  # ignored pixels
  aux = [rng.standard_normal((b, 2, 2, c)).astype(np.float32),   # stride 4
         rng.standard_normal((b, 4, 3, c)).astype(np.float32)]   # stride 2
  task = tasks.SegmentationTask(num_classes=c, foreground_weight=fg, aux_weight=aux_w)
  batch = {"mask": jnp.asarray(mask)}
  plain_sum, plain_count = task.loss(jnp.asarray(logits), batch)
  got_sum, got_count = task.loss(
      {"logits": jnp.asarray(logits), "aux_logits": tuple(map(jnp.asarray, aux))}, batch)
  weight = np.where(np.arange(c) == 0, 1.0, fg)
  want = 0.0
  for a, s in zip(aux, (4, 2)):
    total = 0.0
    for i in range(b):
      for y in range(a.shape[1]):
        for x in range(a.shape[2]):
          block = mask[i, y * s:(y + 1) * s, x * s:(x + 1) * s]
          counts = np.bincount(block[block != 255], minlength=c)
          logp = np.log(_np_softmax(a[i, y, x].astype(np.float64)))
          total += -(counts * weight * logp).sum()
    want += total / len(aux)
  assert float(got_count) == float(plain_count) == (mask != 255).sum()
  np.testing.assert_allclose(float(got_sum) - float(plain_sum), aux_w * want, rtol=2e-5)
  with pytest.raises(ValueError, match="aux_weight is 0"):
    tasks.SegmentationTask(num_classes=c).loss(
        {"logits": jnp.asarray(logits), "aux_logits": tuple(map(jnp.asarray, aux))}, batch)


def test_classification_eval_scores_equal_scikit_learn():
  from sklearn import metrics as skm
  rng = np.random.default_rng(1)
  b, c = 40, 5
  logits = rng.standard_normal((b, c)).astype(np.float32)
  labels = rng.integers(0, c - 1, b)  # class 4 never occurs: a 0/0 recall
  valid = np.arange(b) < 33  # the last 7 are eval padding
  task = tasks.ClassificationTask(num_classes=c)
  batch = {"label": jnp.asarray(labels), "valid": jnp.asarray(valid)}
  scores = task.summarize(task.eval_sums(jnp.asarray(logits), batch))
  y, p = labels[valid], logits.argmax(-1)[valid]
  kw = dict(labels=range(c), average="macro", zero_division=0)
  assert scores["num_examples"] == 33
  np.testing.assert_allclose(scores["accuracy"], skm.accuracy_score(y, p))
  np.testing.assert_allclose(scores["macro_precision"], skm.precision_score(y, p, **kw), rtol=1e-6)
  np.testing.assert_allclose(scores["macro_recall"], skm.recall_score(y, p, **kw), rtol=1e-6)
  np.testing.assert_allclose(scores["macro_f1"], skm.f1_score(y, p, **kw), rtol=1e-6)
  nll = -np.log(_np_softmax(logits.astype(np.float64))[np.arange(b), labels])
  np.testing.assert_allclose(scores["loss"], nll[valid].mean(), rtol=1e-5)
