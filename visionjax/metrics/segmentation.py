"""Semantic-segmentation metrics from a streaming confusion-matrix state.

The state is a plain int32 [C, C] array (a pytree leaf) of pixel counts,
rows = ground truth, columns = prediction. It merges by addition: ``+`` across
batches, ``jax.lax.psum`` across devices inside ``pmap``/``shard_map``, or
simply by computing it under ``jit`` on a sharded batch. Scores are computed
once on host, in float64, by :func:`segmentation_scores`.

In checked mode (:func:`visionjax.losses.checked`) a counted pixel whose
label is outside ``[0, C)`` and not ``ignore_index``, or (without the void
column) whose prediction is outside ``[0, C)``, is an error naming the
function, the pixel and the value; unchecked, such pixels are not counted.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from visionjax.metrics.classification import confusion_counts


def confusion_matrix(labels, preds, num_classes: int, *, ignore_index: Optional[int] = 255,
                     mask=None, void_column: bool = False):
  """Pixel confusion matrix, ignoring ``ignore_index`` ground-truth pixels.

  Args:
    labels: int [...] ground-truth class ids (e.g. [B, H, W]).
    preds: int [...] predicted class ids, same shape.
    num_classes: static Python int ``C``.
    ignore_index: ground-truth id that is not evaluated (default 255), or None.
    mask: optional bool/0-1 array of labels' shape or a leading prefix of it
      (e.g. [B] to drop padded examples).

    void_column: static bool; see Returns.

  Returns:
    int32 [C, C], ``cm[i, j] = #{pixels : label = i, pred = j, counted}``.
    Pixels whose label lies outside [0, C) are not counted. A prediction
    outside [0, C) (e.g. a "void" class) on a counted pixel is dropped by
    default; with ``void_column=True`` the result is [C, C + 1] and such
    pixels land in the last column, so they count as false negatives of the
    true class — the Cityscapes evaluation's rule for predictions of
    non-evaluated labels. Jit-safe; int32 is exact up to 2**31 - 1 per cell.
  """
  return confusion_counts(labels, preds, num_classes, ignore_index=ignore_index, mask=mask,
                          void_column=void_column, caller="segmentation.confusion_matrix")


def init_state(num_classes: int, *, void_column: bool = False):
  """An all-zero streaming state: int32 [C, C] (or [C, C + 1]) NumPy array."""
  return np.zeros((num_classes, num_classes + int(void_column)), np.int32)


def update_state(state, labels, preds, *, ignore_index: Optional[int] = 255, mask=None):
  """Returns ``state + confusion_matrix(labels, preds, C)``; jit-safe.

  ``state`` is [C, C] or [C, C + 1] (void column, see :func:`confusion_matrix`).
  """
  c, width = state.shape
  return state + confusion_counts(labels, preds, c, ignore_index=ignore_index, mask=mask,
                                  void_column=width == c + 1, caller="update_state")


def _divide(num, den):
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def segmentation_scores(cm) -> dict:
  """Scores from a confusion matrix (NumPy or JAX, int [C, C] or [C, C + 1]).

  Runs on host in float64. With ``n_ij = cm[i, j]``, ``t_i = Σ_j n_ij``
  (ground-truth pixels of class i, including void predictions of the optional
  last column), ``p_j = Σ_i n_ij`` (predicted pixels of class j < C) and
  ``N = Σ_i t_i``:

  * ``pixel_accuracy``      = Σ_i n_ii / N
  * ``accuracy_per_class``  = n_ii / t_i (NaN where t_i = 0)
  * ``mean_pixel_accuracy`` = mean of accuracy_per_class over classes with t_i > 0
  * ``iou_per_class``       = n_ii / (t_i + p_i - n_ii) (NaN where the class is
    absent from both ground truth and prediction)
  * ``miou``                = mean of iou_per_class over non-NaN classes
  * ``fwiou``               = Σ_{i: t_i>0} (t_i / N) · IoU_i
  * ``dice_per_class``      = 2 n_ii / (t_i + p_i) (NaN where absent from both)
  * ``mean_dice``           = mean over non-NaN classes

  A class absent from both prediction and ground truth is excluded from the
  means (not counted as 0); a class that is only predicted has IoU = Dice = 0.
  Means over an empty set are NaN. Returned scalars are Python floats, the
  per-class entries float64 [C] NumPy arrays.
  """
  cm = np.asarray(cm, np.float64)
  if cm.ndim != 2 or cm.shape[1] not in (cm.shape[0], cm.shape[0] + 1):
    raise ValueError(f"cm has shape {cm.shape}; expected [C, C] or [C, C + 1] (void column)")
  c = cm.shape[0]
  tp = np.diag(cm[:, :c])
  gt = cm.sum(axis=1)
  pred = cm[:, :c].sum(axis=0)
  total = gt.sum()
  acc = _divide(tp, gt)
  iou = _divide(tp, gt + pred - tp)
  dice = _divide(2 * tp, gt + pred)

  def nanmean(x):
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")

  present = gt > 0
  return {
      "pixel_accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
      "mean_pixel_accuracy": nanmean(acc),
      "miou": nanmean(iou),
      "fwiou": float(np.sum(gt[present] / total * iou[present])) if total > 0 else float("nan"),
      "mean_dice": nanmean(dice),
      "accuracy_per_class": acc,
      "iou_per_class": iou,
      "dice_per_class": dice,
  }
