"""Classification losses on logits: softmax cross-entropy, sigmoid BCE, focal.

All losses share one signature style (see :mod:`visionjax.losses._reduction`):
logits first, then labels, then keyword-only options ``weights`` (per class),
``ignore_index`` (integer labels only), ``where`` (extra validity mask) and
``reduction`` in {'mean', 'sum', 'none', 'sum_and_count'}. They are pure, trace
under ``jax.jit``/``vmap`` and never branch in Python on array values.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import optax

from visionjax.losses._reduction import (check_labels_match, check_reduction,
                                         reduce_loss, validity_mask)


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
  are not counted. ``reduction='mean'`` divides by the number of counted
  elements (not by the sum of class weights); ``'sum_and_count'`` returns
  ``(sum, count)`` so a data-parallel step can ``psum`` both. ``label_smoothing``
  may be a traced scalar.

  The unsmoothed term is optax's ``softmax_cross_entropy_with_integer_labels``
  (correct and jit-safe); ignored labels are replaced by 0 first because optax
  has no ``ignore_index`` and an out-of-range index such as 255 would gather
  garbage (clamped) rather than raise.
  """
  logits = _float(logits)
  labels = jnp.asarray(labels)
  if logits.ndim < 1:
    raise ValueError(f"logits has shape {logits.shape}; expected [..., num_classes]")
  _check_int_labels(labels)
  check_labels_match(logits.shape, labels.shape)
  check_reduction(reduction)
  num_classes = logits.shape[-1]
  valid = validity_mask(labels, ignore_index=ignore_index, where=where)
  safe = jnp.where(valid, labels, 0)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, safe)
  eps = jnp.asarray(label_smoothing, logits.dtype)
  # Uniform-target term: -mean_c log softmax(z)_c = logsumexp(z) - mean(z).
  uniform = jax.nn.logsumexp(logits, axis=-1) - jnp.mean(logits, axis=-1)
  loss = (1.0 - eps) * ce + eps * uniform
  w = _class_weight(weights, safe, num_classes)
  return reduce_loss(loss, w, valid, reduction)
