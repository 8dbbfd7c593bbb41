"""Classification metrics vs scikit-learn (to 1e-6) on random inputs."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

from visionjax.metrics import classification as cls

C = 7


def random_case(seed, n=500):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, C - 1, n)                  # class C-1 never true
  logits = rng.normal(size=(n, C)).astype(np.float32)
  logits[np.arange(n), y] += rng.uniform(0, 2.5, n)
  logits[:, 3] -= 10                             # class 3 (true sometimes) never predicted
  return y.astype(np.int32), logits


def test_confusion_matrix_and_accuracy_equal_sklearn():
  y, logits = random_case(0)
  p = logits.argmax(-1)
  cm = jax.jit(lambda a, b: cls.confusion_matrix(a, b, C))(y, p)
  np.testing.assert_array_equal(np.asarray(cm), skm.confusion_matrix(y, p, labels=np.arange(C)))
  assert float(jax.jit(cls.accuracy)(logits, y)) == pytest.approx(skm.accuracy_score(y, p),
                                                                  abs=1e-6)
  assert float(cls.accuracy(p, y)) == pytest.approx(skm.accuracy_score(y, p), abs=1e-6)
  correct, count = cls.accuracy(logits, y, reduction="sum_and_count")
  assert int(correct) == int(np.sum(p == y)) and float(count) == y.size


def test_mask_excludes_padded_examples():
  y, logits = random_case(1)
  mask = np.random.default_rng(0).random(y.size) < 0.7
  p = logits.argmax(-1)
  cm = cls.confusion_matrix(y, p, C, mask=mask)
  np.testing.assert_array_equal(np.asarray(cm), skm.confusion_matrix(y[mask], p[mask],
                                                                     labels=np.arange(C)))
  assert float(cls.accuracy(logits, y, mask=mask)) == pytest.approx(
      skm.accuracy_score(y[mask], p[mask]), abs=1e-6)
  assert int(cls.top_k_correct(logits, y, 3, mask=mask)) == round(skm.top_k_accuracy_score(
      y[mask], logits[mask], k=3, labels=np.arange(C), normalize=False))


@pytest.mark.parametrize("k", [1, 2, 5])
def test_top_k_equals_sklearn(k):
  y, logits = random_case(2)
  ref = skm.top_k_accuracy_score(y, logits, k=k, labels=np.arange(C))
  assert float(jax.jit(cls.top_k_accuracy, static_argnums=2)(logits, y, k)) == pytest.approx(
      ref, abs=1e-6)
  assert int(cls.top_k_correct(logits, y, k)) == round(ref * y.size)


@pytest.mark.parametrize("average", [None, "micro", "macro", "weighted"])
@pytest.mark.parametrize("zero_division", [0.0, 1.0])
def test_precision_recall_f1_equal_sklearn(average, zero_division):
  y, logits = random_case(3)
  p = logits.argmax(-1)
  cm = cls.confusion_matrix(y, p, C)
  out = jax.jit(lambda m: cls.precision_recall_f1(m, average=average,
                                                  zero_division=zero_division))(cm)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    ref = skm.precision_recall_fscore_support(y, p, labels=np.arange(C), average=average,
                                              zero_division=zero_division)
  for name, r in zip(("precision", "recall", "f1"), ref[:3]):
    np.testing.assert_allclose(np.asarray(out[name]), r, atol=1e-6, err_msg=name)
  if average is None:
    np.testing.assert_array_equal(np.asarray(out["support"]), ref[3])


def test_precision_recall_f1_nan_zero_division_matches_sklearn():
  y, logits = random_case(4)
  p = logits.argmax(-1)
  cm = cls.confusion_matrix(y, p, C)
  for average in (None, "macro", "weighted"):
    out = cls.precision_recall_f1(cm, average=average, zero_division=np.nan)
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      ref = skm.precision_recall_fscore_support(y, p, labels=np.arange(C), average=average,
                                                zero_division=np.nan)
    for name, r in zip(("precision", "recall", "f1"), ref[:3]):
      np.testing.assert_allclose(np.asarray(out[name]), r, atol=1e-6, err_msg=f"{average} {name}")


def test_hand_computed_small_case():
  # y = [0, 0, 1, 2], p = [0, 1, 1, 1]: class 0 P=1 R=.5; class 1 P=1/3 R=1; class 2 P=0 R=0.
  cm = cls.confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 3)
  out = cls.precision_recall_f1(cm)
  np.testing.assert_allclose(out["precision"], [1, 1 / 3, 0], atol=1e-7)
  np.testing.assert_allclose(out["recall"], [0.5, 1, 0], atol=1e-7)
  np.testing.assert_allclose(out["f1"], [2 / 3, 0.5, 0], atol=1e-7)
  assert float(cls.precision_recall_f1(cm, average="micro")["f1"]) == pytest.approx(0.5)


def test_sums_merge_across_devices_with_psum():
  n = jax.local_device_count()
  y, logits = random_case(5, n=n * 16)
  ys, ls = y.reshape(n, 16), logits.reshape(n, 16, C)

  def step(l, t):
    correct, count = cls.accuracy(l, t, reduction="sum_and_count")
    cm = cls.confusion_matrix(t, jnp.argmax(l, -1), C)
    return jax.lax.psum((correct, count, cm), "d")

  correct, count, cm = jax.pmap(step, axis_name="d")(ls, ys)
  p = logits.argmax(-1)
  assert int(correct[0]) == int(np.sum(p == y)) and float(count[0]) == y.size
  np.testing.assert_array_equal(np.asarray(cm[0]), skm.confusion_matrix(y, p, labels=np.arange(C)))


def test_bad_inputs():
  with pytest.raises(ValueError, match="labels has shape"):
    cls.accuracy(np.zeros((4, 3)), np.zeros(5, int))
  with pytest.raises(ValueError, match="k=9"):
    cls.top_k_correct(np.zeros((4, 3)), np.zeros(4, int), 9)
  with pytest.raises(ValueError, match="average="):
    cls.precision_recall_f1(np.eye(3), average="samples")
  with pytest.raises(ValueError, match="reduction="):
    cls.accuracy(np.zeros((4, 3)), np.zeros(4, int), reduction="avg")
