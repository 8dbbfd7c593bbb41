"""Shared reduction and input-validation helpers for every visionjax loss.

Every loss builds an element-wise loss ``l`` and a float validity weight ``v``
(0 where the element is ignored/masked, otherwise the class weight or 1) and
hands both to :func:`reduce_loss`, so the meaning of ``reduction`` is the same
across the package:

* ``'none'``          -> ``l * v`` (ignored elements are exactly 0).
* ``'sum'``           -> ``sum(l * v)``.
* ``'mean'``          -> ``sum(l * v) / count`` where ``count`` is the number of
  non-ignored elements (class weights do NOT enter the denominator; this differs
  from PyTorch's weighted mean on purpose, so that a data-parallel mean is
  ``psum(sum) / psum(count)`` with no second weighted count). 0 if count == 0.
* ``'sum_and_count'`` -> ``(sum(l * v), count)`` for data-parallel trainers.
"""
from __future__ import annotations

from typing import Optional

import jax.numpy as jnp

REDUCTIONS = ("mean", "sum", "none", "sum_and_count")


def check_reduction(reduction: str) -> None:
  if reduction not in REDUCTIONS:
    raise ValueError(
        f"reduction={reduction!r}; expected one of {', '.join(map(repr, REDUCTIONS))}")


def reduce_loss(loss, weight, valid, reduction: str):
  """Reduces an element-wise loss.

  Args:
    loss: float [...] element-wise loss.
    weight: float [...] (broadcastable) per-element weight, already 0 where invalid.
    valid: bool/float [...] (broadcastable) 1 where the element counts.
    reduction: one of REDUCTIONS.
  """
  check_reduction(reduction)
  # jnp.where (not multiplication) so a NaN/inf in an ignored element cannot leak.
  weighted = jnp.where(jnp.broadcast_to(valid, loss.shape) > 0, loss * weight, 0.0)
  if reduction == "none":
    return weighted
  total = jnp.sum(weighted)
  if reduction == "sum":
    return total
  count = jnp.sum(jnp.broadcast_to(valid, loss.shape).astype(jnp.float32))
  if reduction == "sum_and_count":
    return total, count
  return total / jnp.maximum(count, 1.0)


def validity_mask(labels, *, ignore_index: Optional[int], where=None):
  """bool mask of elements that count: ``labels != ignore_index`` and ``where``."""
  valid = jnp.ones(jnp.shape(labels), bool)
  if ignore_index is not None:
    valid = labels != ignore_index
  if where is not None:
    where = jnp.asarray(where)
    where = broadcast_leading(where, jnp.shape(labels), "where")
    valid = valid & (where != 0)
  return valid


def broadcast_leading(x, shape, name: str):
  """Broadcasts ``x`` to ``shape`` aligning LEADING axes (e.g. a per-example
  mask [B] against per-pixel labels [B, H, W]); numpy trailing broadcasting
  is tried first."""
  xs = tuple(jnp.shape(x))
  shape = tuple(shape)
  if xs == shape:
    return x
  if 0 < len(xs) < len(shape) and shape[:len(xs)] == xs:
    return jnp.broadcast_to(jnp.reshape(x, xs + (1,) * (len(shape) - len(xs))), shape)
  try:
    return jnp.broadcast_to(x, shape)
  except ValueError:
    raise ValueError(
        f"{name} has shape {xs}; expected {shape}, a prefix of it (leading batch "
        f"axes) or a shape broadcastable to it") from None


def check_labels_match(logits_shape, labels_shape, *, class_axis_last=True, what="logits"):
  """Integer labels [...] must equal logits [..., C] without the class axis."""
  if tuple(logits_shape[:-1]) != tuple(labels_shape):
    raise ValueError(
        f"labels has shape {tuple(labels_shape)}; expected {tuple(logits_shape[:-1])} "
        f"({what} shape {tuple(logits_shape)} without its last, class axis)")
