"""Classification metrics: confusion matrix, accuracy, top-k, precision/recall/F1.

Device-side functions (``confusion_matrix``, ``accuracy``, ``top_k_correct``,
``top_k_accuracy``) are pure and jit-safe and return sums/counts that merge by
addition (``psum`` across devices, ``+`` across batches). Host-side functions
(``precision_recall_f1`` ...) turn a confusion matrix into scores with NumPy.

Id values are checked in checked mode only (:func:`visionjax.losses.checked`):
counted labels must be in ``[0, C)`` (or the
``ignore_index``), predicted ids in ``[0, C)``. Unchecked, the documented
conventions below apply (out-of-range ids are never counted / never hits).
"""
from __future__ import annotations

from typing import Optional

import jax.numpy as jnp
import numpy as np

from visionjax.losses.reduction import broadcast_leading, check_class_ids, check_reduction


def _check_int(x, name):
  if not jnp.issubdtype(x.dtype, jnp.integer):
    raise TypeError(f"{name} has dtype {x.dtype}; expected an integer dtype (class ids)")


def confusion_counts(labels, preds, num_classes: int, *, ignore_index: Optional[int] = None,
                     mask=None, void_column: bool = False, caller: str = "confusion_counts"):
  """Shared jit-safe confusion-matrix kernel (see :func:`confusion_matrix`).

  Every element is mapped to the flat cell ``label * W + pred`` (W = C, or
  C + 1 with ``void_column``) and counted with weight 1, or 0 when it is
  ignored: ``label == ignore_index``, ``mask == 0``, or a label outside
  [0, C). A prediction outside [0, C) is dropped too, unless ``void_column``
  is set, in which case it is counted in the extra last column (an error
  charged to the row's class). Ids are never clamped, so stray values cannot
  corrupt a real cell. Counts are int32 and exact (scatter-add, no float
  matmul that would round above 2**24).

  In checked mode, a counted label (not ignored, not masked) outside [0, C)
  or, without ``void_column``, a prediction outside [0, C) on such an element
  is an error naming ``caller`` (the public function that was called).
  """
  labels = jnp.asarray(labels)
  preds = jnp.asarray(preds)
  _check_int(labels, "labels")
  _check_int(preds, "preds")
  if labels.shape != preds.shape:
    raise ValueError(f"preds has shape {preds.shape}; expected the labels shape {labels.shape}")
  if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
    raise ValueError(f"num_classes={num_classes!r}; expected a positive Python int (static)")
  c = int(num_classes)
  width = c + 1 if void_column else c
  valid = (labels >= 0) & (labels < c)
  pred_ok = (preds >= 0) & (preds < c)
  if ignore_index is not None:
    valid = valid & (labels != ignore_index)
  if mask is not None:
    mask = broadcast_leading(jnp.asarray(mask), labels.shape, "mask")
    valid = valid & (mask != 0)
  counted = jnp.ones(labels.shape, bool) if mask is None else mask != 0
  check_class_ids(caller, labels, c, ignore_index=ignore_index, counted=counted)
  if not void_column:  # with it, out-of-range predictions are the void column, not errors
    if ignore_index is not None:
      counted = counted & (labels != ignore_index)
    check_class_ids(caller, preds, c, counted=counted, name="preds")
  if void_column:
    col = jnp.where(pred_ok, preds.astype(jnp.int32), c)
  else:
    valid = valid & pred_ok
    col = preds.astype(jnp.int32)
  flat = jnp.where(valid, labels.astype(jnp.int32) * width + col, 0)
  counts = jnp.zeros((c * width,), jnp.int32).at[flat.reshape(-1)].add(
      valid.reshape(-1).astype(jnp.int32), mode="drop")
  return counts.reshape(c, width)


def confusion_matrix(labels, preds, num_classes: int, *, mask=None):
  """Confusion matrix ``cm[i, j]`` = #examples with true class i predicted as j.

  Args:
    labels: int [...] ground-truth classes.
    preds: int [...] predicted classes (same shape as labels).
    num_classes: static Python int ``C``.
    mask: optional bool/0-1 array, same shape as labels or a leading prefix of
      it (e.g. [B] marking padded examples); 0 entries are not counted.

  Returns:
    int32 [C, C] (rows = ground truth, columns = prediction), equal to
    ``sklearn.metrics.confusion_matrix(labels, preds, labels=range(C))``.
    Ids outside [0, C) are not counted. Merges across batches/devices by ``+``.
  """
  return confusion_counts(labels, preds, num_classes, mask=mask, caller="confusion_matrix")


def _counted(labels, mask):
  """bool [...] of elements that count (``mask != 0``), for the value checks."""
  if mask is None:
    return None
  return broadcast_leading(jnp.asarray(mask), labels.shape, "mask") != 0


def _valid_count(labels, mask):
  if mask is None:
    return jnp.asarray(labels.size, jnp.float32) * jnp.ones((), jnp.float32)
  mask = broadcast_leading(jnp.asarray(mask), labels.shape, "mask")
  return jnp.sum((mask != 0).astype(jnp.float32))


def _reduce_hits(hits, labels, mask, reduction):
  """hits: bool [...] -> 'mean' | 'sum' | 'sum_and_count' | 'none'."""
  check_reduction(reduction)
  if mask is not None:
    m = broadcast_leading(jnp.asarray(mask), labels.shape, "mask") != 0
    hits = hits & m
  if reduction == "none":
    return hits
  total = jnp.sum(hits.astype(jnp.int32))
  if reduction == "sum":
    return total
  count = _valid_count(labels, mask)
  if reduction == "sum_and_count":
    return total, count
  return total.astype(jnp.float32) / jnp.maximum(count, 1.0)


def top_k_correct(logits, labels, k: int = 1, *, mask=None):
  """Number of examples whose label is among the ``k`` highest scores.

  Shapes: ``logits`` float [..., C]; ``labels`` int [...]; ``mask`` as in
  :func:`confusion_matrix`. Returns int32 [] (a sum that merges by addition).

  Formula: example n is a hit iff ``#{c : z_nc > z_n,y_n} < k`` (ties broken in
  favour of the true class; with continuous scores there are no ties and this
  equals ``sklearn.metrics.top_k_accuracy_score`` times the count). Labels
  outside [0, C) are never hits (and an error in checked mode).
  """
  return top_k_accuracy(logits, labels, k, mask=mask, reduction="sum")


def top_k_accuracy(logits, labels, k: int = 1, *, mask=None, reduction: str = "mean"):
  """Top-k accuracy; ``reduction``: 'mean' (default), 'sum', 'sum_and_count', 'none'.

  See :func:`top_k_correct` for the formula and shapes.
  """
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  _check_int(labels, "labels")
  if logits.shape[:-1] != labels.shape:
    raise ValueError(f"labels has shape {labels.shape}; expected {logits.shape[:-1]} "
                     f"(logits shape {logits.shape} without its class axis)")
  c = logits.shape[-1]
  if not isinstance(k, (int, np.integer)) or not 1 <= k <= c:
    raise ValueError(f"k={k!r}; expected a Python int in [1, {c}]")
  check_class_ids("top_k_accuracy", labels, c, counted=_counted(labels, mask))
  in_range = (labels >= 0) & (labels < c)
  safe = jnp.where(in_range, labels, 0)
  true_score = jnp.take_along_axis(logits, safe[..., None], axis=-1)
  n_above = jnp.sum(logits > true_score, axis=-1)
  return _reduce_hits((n_above < k) & in_range, labels, mask, reduction)


def accuracy(preds_or_logits, labels, *, mask=None, reduction: str = "mean",
             num_classes: Optional[int] = None):
  """Accuracy = #(pred == label, label a class id) / #counted.

  Args:
    preds_or_logits: int [...] predicted classes, or float [..., C] logits
      (argmax taken; ties go to the lowest index).
    labels: int [...].
    mask: optional validity mask (same shape as labels or a leading prefix).
    reduction: 'mean' (default), 'sum' (int32 number correct),
      'sum_and_count' (``(correct, count)`` for psum), or 'none' (bool hits).
    num_classes: optional static C for int predictions (logits give it).

  A negative label is never a hit, even when the prediction equals it (e.g.
  both -1), and with C known neither is a label >= C; such labels are still
  counted in the denominator, as in :func:`top_k_accuracy`. In checked mode
  a counted label outside [0, C) (``>= 0`` when C is unknown), or such an int
  prediction, is an error.
  """
  x = jnp.asarray(preds_or_logits)
  labels = jnp.asarray(labels)
  _check_int(labels, "labels")
  is_logits = jnp.issubdtype(x.dtype, jnp.floating)
  c = num_classes
  if c is not None and (not isinstance(c, (int, np.integer)) or c < 1):
    raise ValueError(f"num_classes={c!r}; expected a positive Python int (static)")
  if is_logits:
    if x.shape[:-1] != labels.shape:
      raise ValueError(f"labels has shape {labels.shape}; expected {x.shape[:-1]} "
                       f"(logits shape {x.shape} without its class axis)")
    if c is not None and c != x.shape[-1]:
      raise ValueError(f"num_classes={c}; expected None or {x.shape[-1]}, the logits' class "
                       "axis")
    c = x.shape[-1]
    x = jnp.argmax(x, axis=-1)  # in [0, C): a label >= C never equals it
  elif x.shape != labels.shape:
    raise ValueError(f"preds has shape {x.shape}; expected the labels shape {labels.shape}")
  counted = _counted(labels, mask)
  check_class_ids("accuracy", labels, c, counted=counted)
  if not is_logits:
    check_class_ids("accuracy", x, c, counted=counted, name="preds")
  hits = (x == labels) & (labels >= 0)
  if not is_logits and c is not None:  # ids >= C are not classes either
    hits = hits & (labels < c)
  return _reduce_hits(hits, labels, mask, reduction)


AVERAGES = (None, "micro", "macro", "weighted")


def precision_recall_f1(cm, *, average: Optional[str] = None, zero_division: float = 0.0):
  """Precision, recall, F1 and support from a confusion matrix (rows = truth).

  Per class c with tp = cm[c, c], fp = Σ_i cm[i, c] - tp, fn = Σ_j cm[c, j] - tp::

    precision_c = tp / (tp + fp),  recall_c = tp / (tp + fn),
    f1_c = 2·tp / (2·tp + fp + fn),  support_c = tp + fn

  A 0/0 ratio takes ``zero_division`` (0, 1 or NaN). ``average``:

  * None: per-class arrays [C];
  * 'micro': ratios of the summed tp/fp/fn over classes;
  * 'macro': unweighted mean of the per-class values;
  * 'weighted': mean weighted by support.

  NaN entries (``zero_division=nan``) are left out of macro/weighted means.
  Equals ``sklearn.metrics.precision_recall_fscore_support(y, p,
  labels=range(C), average=..., zero_division=...)``. Pure jnp: jit-safe;
  returns a dict with 'precision', 'recall', 'f1', 'support'.
  """
  if average not in AVERAGES:
    raise ValueError(f"average={average!r}; expected one of {AVERAGES}")
  cm = jnp.asarray(cm)
  if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
    raise ValueError(f"cm has shape {cm.shape}; expected a square [C, C] confusion matrix")
  cm = cm.astype(jnp.float32)
  tp = jnp.diag(cm)
  fp = cm.sum(axis=0) - tp
  fn = cm.sum(axis=1) - tp
  support = tp + fn
  if average == "micro":
    tp, fp, fn = tp.sum(), fp.sum(), fn.sum()

  def ratio(num, den):
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), zero_division)

  precision = ratio(tp, tp + fp)
  recall = ratio(tp, tp + fn)
  f1 = ratio(2 * tp, 2 * tp + fp + fn)
  if average in ("macro", "weighted"):
    w = jnp.ones_like(support) if average == "macro" else support

    def mean(x):
      ok = ~jnp.isnan(x)
      den = jnp.sum(jnp.where(ok, w, 0.0))
      return jnp.where(den > 0, jnp.sum(jnp.where(ok, x * w, 0.0)) / jnp.where(den > 0, den, 1.0),
                       zero_division if average == "weighted" else jnp.nan)

    precision, recall, f1 = mean(precision), mean(recall), mean(f1)
  if average is not None:
    support = support.sum()
  return {"precision": precision, "recall": recall, "f1": f1, "support": support}
