"""Classification losses on logits: softmax cross-entropy, sigmoid BCE, focal.

All losses share one signature style (see :mod:`visionjax.losses.reduction`):
logits first, then labels, then keyword-only options ``weights`` (per class),
``ignore_index`` (integer labels only), ``where`` (extra validity mask) and
``reduction`` in {'mean', 'sum', 'none', 'sum_and_count'}. They are pure, trace
under ``jax.jit``/``vmap`` and never branch in Python on array values.

Label values are only checked in checked mode (:func:`visionjax.losses.checked`,
see :mod:`visionjax.losses.reduction`); unchecked, a counted label outside
``[0, C)`` gives an undefined loss (optax clamps the gather: -1 scores as
class C - 1, C or more gives NaN) and a binary target outside [0, 1] a
meaningless one.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import optax

from visionjax.losses.reduction import (
  check_class_ids,
  check_labels_match,
  check_reduction,
  check_unit_targets,
  reduce_loss,
  validity_mask,
)


def _float(x):
  """Upcasts half-precision logits: the losses are computed in >= float32."""
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.float32)
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _check_int_labels(labels, name="labels"):
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"{name} has dtype {labels.dtype}; expected an integer dtype "
                    "(class indices)")


def _class_weight(weights, safe_labels, num_classes):
  if weights is None:
    return jnp.ones(safe_labels.shape, jnp.float32)
  weights = jnp.asarray(weights, jnp.float32)
  if weights.shape != (num_classes,):
    raise ValueError(f"weights has shape {weights.shape}; expected ({num_classes},) "
                     "(one weight per class)")
  return weights[safe_labels]


def _integer_label_setup(fn, logits, labels, ignore_index, where, reduction, min_classes=1):
  """Checks logits [..., C] / int labels [...]; returns (logits, valid, safe labels).

  Shapes/dtypes at trace time; label values in checked mode only (``fn`` names
  the caller in the message).
  """
  logits = _float(logits)
  labels = jnp.asarray(labels)
  if logits.ndim < 1 or logits.shape[-1] < min_classes:
    raise ValueError(f"logits has shape {logits.shape}; expected [..., C] with C >= {min_classes}")
  _check_int_labels(labels)
  check_labels_match(logits.shape, labels.shape)
  check_reduction(reduction)
  valid = validity_mask(labels, ignore_index=ignore_index, where=where)
  check_class_ids(fn, labels, logits.shape[-1], ignore_index=ignore_index, counted=valid)
  # Ignored labels (e.g. 255) become 0 so every gather stays in range; their
  # loss is masked out by `valid`.
  return logits, valid, jnp.where(valid, labels, 0)


def softmax_cross_entropy(logits, labels, *, ignore_index: Optional[int] = None,
                          label_smoothing: float = 0.0, weights=None,
                          reduction: str = "mean", where=None):
  r"""Softmax cross-entropy with integer labels and optional label smoothing.

  Shapes: ``logits`` float [..., C]; ``labels`` int [...]; ``weights`` float [C];
  ``where`` bool [...] or a leading prefix of it (e.g. [B] for labels [B, H, W]).

  Formula, per element with label ``y`` and smoothing ``ε``::

    q_c = (1 - ε)·[c = y] + ε / C
    l   = -Σ_c q_c · log softmax(z)_c
        = (1 - ε)·(logsumexp(z) - z_y) + ε·(logsumexp(z) - mean_c z_c)
    l  *= weights[y]

  Elements with ``labels == ignore_index`` or ``where == 0`` contribute 0 and
  are not counted; every other label must be in ``[0, C)`` (checked in checked
  mode, undefined otherwise: see the module docstring). ``reduction='mean'``
  divides by the number of counted elements (not by the sum of class
  weights); ``'sum_and_count'`` returns ``(sum, count)`` so a data-parallel
  step can ``psum`` both. ``label_smoothing`` may be a traced scalar.

  The unsmoothed term is optax's ``softmax_cross_entropy_with_integer_labels``
  (correct and jit-safe); ignored labels are replaced by 0 first because optax
  has no ``ignore_index`` and an out-of-range index such as 255 would gather
  garbage (clamped) rather than raise.
  """
  logits, valid, safe = _integer_label_setup("softmax_cross_entropy", logits, labels,
                                             ignore_index, where, reduction)
  num_classes = logits.shape[-1]
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, safe)
  eps = jnp.asarray(label_smoothing, logits.dtype)
  # Uniform-target term: -mean_c log softmax(z)_c = logsumexp(z) - mean(z).
  uniform = jax.nn.logsumexp(logits, axis=-1) - jnp.mean(logits, axis=-1)
  loss = (1.0 - eps) * ce + eps * uniform
  w = _class_weight(weights, safe, num_classes)
  return reduce_loss(loss, w, valid, reduction)


def _elementwise_setup(fn, logits, labels, weights, ignore_index, where, reduction):
  """Common checks for sigmoid losses: labels float/int with logits' shape.

  Counted targets must be in [0, 1] (checked mode only; ``fn`` names the caller).
  """
  logits = _float(logits)
  labels = jnp.asarray(labels)
  if labels.shape != logits.shape:
    raise ValueError(f"labels has shape {labels.shape}; expected the logits shape "
                     f"{logits.shape} (one binary target per logit)")
  check_reduction(reduction)
  valid = validity_mask(labels, ignore_index=ignore_index, where=where)
  check_unit_targets(fn, labels, ignore_index=ignore_index, counted=valid)
  targets = jnp.where(valid, labels, 0).astype(logits.dtype)
  if weights is None:
    w = jnp.ones((), jnp.float32)
  else:
    w = jnp.asarray(weights, jnp.float32)
    if logits.ndim == 0 or w.shape != (logits.shape[-1],):
      c = logits.shape[-1] if logits.ndim else 1
      raise ValueError(f"weights has shape {w.shape}; expected ({c},) (one weight per class "
                       "along the last axis)")
  return logits, targets, valid, w


def sigmoid_binary_cross_entropy(logits, labels, *, weights=None,
                                 ignore_index: Optional[int] = None, reduction: str = "mean",
                                 where=None):
  r"""Element-wise sigmoid binary cross-entropy.

  Shapes: ``logits`` float [...]; ``labels`` [...] with targets in [0, 1]
  (int or float; multi-label one-hot [..., C] included); ``weights`` [C]
  applied along the last axis.

  Formula: ``l = -t·log σ(z) - (1 - t)·log(1 - σ(z))``, computed by optax's
  ``sigmoid_binary_cross_entropy`` (log-sigmoid form, stable and jit-safe).
  Elements with ``labels == ignore_index`` (e.g. 255 in binary masks) or
  ``where == 0`` are ignored; 'mean' averages over counted elements.
  """
  logits, targets, valid, w = _elementwise_setup("sigmoid_binary_cross_entropy", logits, labels,
                                                 weights, ignore_index, where, reduction)
  loss = optax.sigmoid_binary_cross_entropy(logits, targets)
  return reduce_loss(loss, w, valid, reduction)


def sigmoid_focal_loss(logits, labels, *, alpha: Optional[float] = 0.25, gamma: float = 2.0,
                       weights=None, ignore_index: Optional[int] = None,
                       reduction: str = "mean", where=None):
  r"""Sigmoid focal loss (Lin et al. 2017), element-wise.

  Shapes as :func:`sigmoid_binary_cross_entropy`. With ``p = σ(z)``,
  ``p_t = p·t + (1 - p)·(1 - t)`` and ``α_t = α·t + (1 - α)·(1 - t)``::

    FL = -α_t · (1 - p_t)^γ · log p_t

  ``alpha=None`` disables the α_t factor. The element-wise term is optax's
  ``sigmoid_focal_loss``, which computes (1 - p_t)^γ in log space (finite
  gradients for γ < 1 at saturated logits). RetinaNet normalises by the number
  of positive anchors: use ``reduction='sum'`` and divide.
  """
  logits, targets, valid, w = _elementwise_setup("sigmoid_focal_loss", logits, labels, weights,
                                                 ignore_index, where, reduction)
  loss = optax.sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma)
  return reduce_loss(loss, w, valid, reduction)


def softmax_focal_loss(logits, labels, *, alpha=None, gamma: float = 2.0, weights=None,
                       ignore_index: Optional[int] = None, reduction: str = "mean",
                       where=None):
  r"""Softmax (multi-class) focal loss with integer labels.

  Shapes: ``logits`` [..., C]; ``labels`` int [...]; ``alpha`` None, a scalar
  or [C]; ``weights`` [C]. With ``p_y = softmax(z)_y``::

    FL = -α_y · (1 - p_y)^γ · log p_y        (γ = 0, α = None: cross-entropy)

  Written here because optax has no softmax focal loss. ``log(1 - p_y)`` is
  computed as ``logsumexp_{c≠y} z_c - logsumexp_c z_c`` so that ``(1-p_y)^γ``
  and its gradient stay finite when p_y → 1. Ignoring/reduction as in
  :func:`softmax_cross_entropy`.
  """
  logits, valid, safe = _integer_label_setup("softmax_focal_loss", logits, labels,
                                             ignore_index, where, reduction, min_classes=2)
  num_classes = logits.shape[-1]
  onehot = jax.nn.one_hot(safe, num_classes, dtype=bool)
  lse = jax.nn.logsumexp(logits, axis=-1)
  log_p = jnp.sum(jnp.where(onehot, logits, 0.0), axis=-1) - lse
  log_not_p = jax.nn.logsumexp(jnp.where(onehot, -jnp.inf, logits), axis=-1) - lse
  loss = -jnp.exp(gamma * log_not_p) * log_p
  if alpha is not None:
    a = jnp.asarray(alpha, jnp.float32)
    if a.ndim == 1 and a.shape != (num_classes,):
      raise ValueError(f"alpha has shape {a.shape}; expected a scalar or ({num_classes},)")
    loss = loss * (a[safe] if a.ndim == 1 else a)
  w = _class_weight(weights, safe, num_classes)
  return reduce_loss(loss, w, valid, reduction)
