"""Soft overlap losses for dense prediction: Dice, Jaccard (IoU), Tversky.

Logits in, channels last. Three modes (as in segmentation_models_pytorch):

* ``'binary'``     : logits [...], labels [...] in {0, 1}; p = σ(z), one class.
* ``'multiclass'`` : logits [..., C], labels int [...]; p = softmax(z), t = one-hot.
* ``'multilabel'`` : logits [..., C], labels [..., C] in {0, 1}; p = σ(z).

Per class c (sums over every pixel of the batch, or per sample with
``per_sample=True``), with I = Σ p·t, P = Σ p, T = Σ t::

  Dice_c     = (2I + s) / max(P + T + s, eps)
  Jaccard_c  = (I + s) / max(P + T - I + s, eps)
  Tversky_c  = (I + s) / max(I + α(P - I) + β(T - I) + s, eps)
  loss_c     = (1 - score_c) ** gamma      (gamma: static, 1 except focal Tversky)

Pixels whose label is ``ignore_index`` (or ``where == 0``) are removed from all
three sums. The "elements" that ``reduction`` acts on are classes ([C], or
[B, C] with ``per_sample``): 'mean' averages over counted classes, 'none'
returns them; ``weights`` [C] scales each class. ``skip_empty=True`` does not
count classes with T = 0 (no target pixel), matching the metric convention
that classes absent from the ground truth are excluded.

Written here rather than reusing ``optax.losses.dice_loss`` because that
function raises, on values, when ``apply_softmax=False`` (it calls
``jnp.allclose`` on the input and branches in Python, which fails under
``jit``), has no ``ignore_index``, and has no multilabel/sigmoid mode for C > 1.

Label values (counted multiclass ids in ``[0, C)``, binary/multilabel targets
in [0, 1], ``ignore_index`` allowed) are checked only in checked mode
(:func:`visionjax.losses.checked`). Unchecked, an out-of-range multiclass id
has an all-zero one-hot row: its pixel adds to P but to no T, silently.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from visionjax.losses.reduction import (
  broadcast_leading,
  check_class_ids,
  check_labels_match,
  check_reduction,
  check_unit_targets,
  reduce_loss,
)

MODES = ("binary", "multiclass", "multilabel")


def _overlap_sums(fn, logits, labels, *, mode, ignore_index, where, per_sample):
  """Returns (I, P, T) each [C] or [B, C]; ``fn`` names the caller in checked mode."""
  if mode not in MODES:
    raise ValueError(f"mode={mode!r}; expected one of {MODES}")
  logits = jnp.asarray(logits)
  logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
  labels = jnp.asarray(labels)
  if mode == "binary":
    if labels.shape != logits.shape:
      raise ValueError(f"labels has shape {labels.shape}; expected the logits shape "
                       f"{logits.shape} in binary mode")
    logits, labels = logits[..., None], labels[..., None]
  if mode == "multiclass":
    if not jnp.issubdtype(labels.dtype, jnp.integer):
      raise TypeError(f"labels has dtype {labels.dtype}; expected integer class ids in "
                      "multiclass mode")
    check_labels_match(logits.shape, labels.shape)
    pix_valid = jnp.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
    num_classes = logits.shape[-1]
    probs = jax.nn.softmax(logits, axis=-1)
    targets = jax.nn.one_hot(jnp.where(pix_valid, labels, 0), num_classes, dtype=probs.dtype)
    valid = pix_valid[..., None]
  else:
    if labels.shape != logits.shape:
      raise ValueError(f"labels has shape {labels.shape}; expected {logits.shape} in "
                       f"{mode} mode")
    valid = jnp.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
    probs = jax.nn.sigmoid(logits)
    targets = jnp.where(valid, labels, 0).astype(probs.dtype)
  if where is not None:
    w = jnp.asarray(where)
    # `where` marks pixels: [...] (or a leading prefix such as [B]) in every mode.
    w = broadcast_leading(w, logits.shape[:-1], "where")[..., None]
    valid = valid & (w != 0)
  # Value contract (checked mode only): what is counted must be a class id /
  # a target in [0, 1]; masked pixels may hold anything.
  if mode == "multiclass":
    check_class_ids(fn, labels, logits.shape[-1], ignore_index=ignore_index,
                    counted=valid[..., 0])
  elif mode == "binary":  # index the caller's [...] labels, not the added class axis
    check_unit_targets(fn, labels[..., 0], ignore_index=ignore_index, counted=valid[..., 0])
  else:
    check_unit_targets(fn, labels, ignore_index=ignore_index,
                       counted=jnp.broadcast_to(valid, labels.shape))
  valid = jnp.broadcast_to(valid, probs.shape)
  probs = jnp.where(valid, probs, 0.0)
  targets = jnp.where(valid, targets, 0.0)
  if per_sample and logits.ndim < 3:
    raise ValueError(f"per_sample=True needs [B, ..., C] logits; got shape {logits.shape}")
  axes = tuple(range(1 if per_sample else 0, probs.ndim - 1))
  inter = jnp.sum(probs * targets, axis=axes)
  psum = jnp.sum(probs, axis=axes)
  tsum = jnp.sum(targets, axis=axes)
  return inter, psum, tsum


def _finish(score, tsum, weights, skip_empty, gamma, reduction):
  check_reduction(reduction)
  loss = 1.0 - score
  if gamma != 1.0:
    loss = jnp.maximum(loss, 0.0) ** gamma
  c = loss.shape[-1]
  if weights is None:
    w = jnp.ones((c,), loss.dtype)
  else:
    w = jnp.asarray(weights, loss.dtype)
    if w.shape != (c,):
      raise ValueError(f"weights has shape {w.shape}; expected ({c},) (one per class)")
  valid = (tsum > 0) if skip_empty else jnp.ones(loss.shape, bool)
  return reduce_loss(loss, w, valid, reduction)


def _overlap_loss(kind, logits, labels, *, mode, smooth, eps, alpha=0.5, beta=0.5, gamma=1.0,
                  ignore_index, weights, skip_empty, per_sample, reduction, where):
  fn = {"dice": "soft_dice_loss", "jaccard": "soft_jaccard_loss"}.get(kind, "tversky_loss")
  inter, psum, tsum = _overlap_sums(fn, logits, labels, mode=mode, ignore_index=ignore_index,
                                    where=where, per_sample=per_sample)
  if kind == "dice":
    num, den = 2.0 * inter + smooth, psum + tsum + smooth
  elif kind == "jaccard":
    num, den = inter + smooth, psum + tsum - inter + smooth
  else:
    num = inter + smooth
    den = inter + alpha * (psum - inter) + beta * (tsum - inter) + smooth
  score = num / jnp.maximum(den, eps)
  return _finish(score, tsum, weights, skip_empty, gamma, reduction)


def soft_dice_loss(logits, labels, *, mode: str = "multiclass", smooth: float = 0.0,
                   eps: float = 1e-7, ignore_index: Optional[int] = None, weights=None,
                   skip_empty: bool = False, per_sample: bool = False,
                   reduction: str = "mean", where=None):
  """Soft Dice loss ``1 - (2I + s) / max(P + T + s, eps)`` per class (see module doc)."""
  return _overlap_loss("dice", logits, labels, mode=mode, smooth=smooth, eps=eps,
                       ignore_index=ignore_index, weights=weights, skip_empty=skip_empty,
                       per_sample=per_sample, reduction=reduction, where=where)


def soft_jaccard_loss(logits, labels, *, mode: str = "multiclass", smooth: float = 0.0,
                      eps: float = 1e-7, ignore_index: Optional[int] = None, weights=None,
                      skip_empty: bool = False, per_sample: bool = False,
                      reduction: str = "mean", where=None):
  """Soft Jaccard/IoU loss ``1 - (I + s) / max(P + T - I + s, eps)`` per class."""
  return _overlap_loss("jaccard", logits, labels, mode=mode, smooth=smooth, eps=eps,
                       ignore_index=ignore_index, weights=weights, skip_empty=skip_empty,
                       per_sample=per_sample, reduction=reduction, where=where)


def tversky_loss(logits, labels, *, alpha: float = 0.5, beta: float = 0.5, gamma: float = 1.0,
                 mode: str = "multiclass", smooth: float = 0.0, eps: float = 1e-7,
                 ignore_index: Optional[int] = None, weights=None, skip_empty: bool = False,
                 per_sample: bool = False, reduction: str = "mean", where=None):
  """Tversky loss ``(1 - (I + s) / max(I + α·FP + β·FN + s, eps)) ** γ`` per class.

  FP = P - I (weighted by ``alpha``), FN = T - I (``beta``); α = β = 0.5 gives
  Dice when s = 0, α = β = 1 Jaccard; ``gamma`` != 1 is the focal Tversky loss.
  """
  return _overlap_loss("tversky", logits, labels, mode=mode, smooth=smooth, eps=eps,
                       alpha=alpha, beta=beta, gamma=gamma, ignore_index=ignore_index,
                       weights=weights, skip_empty=skip_empty, per_sample=per_sample,
                       reduction=reduction, where=where)
