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

Checked mode. Shapes and dtypes are checked at trace time (ValueError /
TypeError). Values cannot be, under ``jit``, so every loss and metric also
states its value contract (class ids in ``[0, C)`` or ``ignore_index``, targets
in [0, 1], finite boxes) with :func:`check_all`, a
``jax.experimental.checkify.debug_check``. Such a check is a no-op unless the
function is transformed by ``checkify.checkify``, e.g. through
:func:`checked`::

  ce = visionjax.losses.checked(softmax_cross_entropy, ignore_index=255)
  err, loss = jax.jit(ce)(logits, labels)
  err.throw()  # JaxRuntimeError (a ValueError) naming the function and value

In ordinary use the check leaves a ``check[debug=True]`` equation in the
jaxpr that lowers to nothing, and XLA removes the now-unused predicate, so
the compiled program is the same as without the check
(tests/test_bad_inputs.py compares the compiled HLO). Un-jitted (eager) calls
do evaluate the few element-wise predicate ops and discard the result.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional

from jax.experimental import checkify
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


def checked(fn: Callable, /, *, errors=checkify.user_checks, **options) -> Callable:
  """Checked mode: ``checkify.checkify(partial(fn, **options), errors=errors)``.

  The result returns ``(err, out)``; ``err.throw()`` raises
  ``checkify.JaxRuntimeError`` (a ValueError) with the first failed check's
  message, e.g. ``softmax_cross_entropy: labels must be class ids in [0, 10)
  or ignore_index=255; got labels[0, 3] = -1``. It can be jitted, vmapped or
  differentiated like ``fn``; ``err.throw()`` must run outside ``jit``.

  Args:
    fn: any visionjax loss, metric or box op (or a function calling them).
    errors: checkify error set; ``checkify.user_checks`` (the checks written
      in visionjax) by default, e.g. ``| checkify.nan_checks`` to add XLA's.
    **options: non-array keyword arguments bound statically (``reduction``,
      ``ignore_index``, ``num_classes`` ...), since strings and Python ints
      cannot be traced arguments of ``jit``.
  """
  return checkify.checkify(functools.partial(fn, **options) if options else fn, errors=errors)


def unchecked(fn: Callable, /) -> Callable:
  """``fn`` with its debug checks discharged: same outputs, no error effects.

  A ``debug_check`` compiles to nothing, but it leaves an error *effect* on
  the traced program, and ``jax.jit`` dispatches a program with effects
  through its Python path instead of the C++ fast path: every call then
  re-flattens and re-checks all arguments in Python (measured on the
  quickstart U-Net's train step: ~60 % of the main thread's samples). Wrap a
  step in ``unchecked`` before ``jit``/``pmap``; checking stays available
  through :func:`checked`. Written here because checkify has no
  "discharge and drop" helper: ``checkify.checkify(fn, errors=frozenset())``
  removes the checks and the error it returns is constant, so it is dropped.
  """
  discharged = checkify.checkify(fn, errors=frozenset())

  @functools.wraps(fn)
  def run(*args, **kwargs):
    return discharged(*args, **kwargs)[1]

  return run


def _escape(text: str) -> str:
  return str(text).replace("{", "{{").replace("}", "}}")


def check_all(fn: str, ok, values, *, name: str, expected: str) -> None:
  """Checked-mode assertion that every element of ``ok`` is True.

  A ``checkify.debug_check``: a no-op (no compiled code) unless ``fn`` runs
  under ``checkify.checkify``, see the module docstring. The message names
  the first failing element in row-major order and its value::

    "{fn}: {name} must be {expected}; got {name}[i, j] = {value}"

  Args:
    fn: public function name for the message (e.g. 'softmax_cross_entropy').
    ok: bool [...] one entry per checked element.
    values: [...] or [..., K] (e.g. boxes [..., 4]) whose row for the first
      failing element is printed.
    name: argument name for the message.
    expected: what a valid element is, for the message.
  """
  ok = jnp.asarray(ok)
  if ok.size == 0:
    return
  first = jnp.argmin(ok.reshape(-1))  # first False; 0 when all pass (unused then)
  value = jnp.reshape(jnp.asarray(values), (ok.size, -1))[first]
  if value.shape == (1,):
    value = value[0]
  index = {f"i{d}": i for d, i in enumerate(jnp.unravel_index(first, ok.shape))}
  where = "[" + ", ".join("{" + k + "}" for k in index) + "]" if index else ""
  msg = f"{_escape(fn)}: {_escape(name)} must be {_escape(expected)}; got {_escape(name)}"
  checkify.debug_check(jnp.all(ok), msg + where + " = {value}", value=value, **index)


def check_class_ids(fn: str, ids, num_classes: Optional[int], *, ignore_index=None,
                    counted=None, name: str = "labels") -> None:
  """Checked mode: ids in ``[0, num_classes)`` or equal to ``ignore_index``.

  Args:
    fn: public function name for the message.
    ids: int [...] class ids (labels or predictions).
    num_classes: static C, or None to check only ``ids >= 0``.
    ignore_index: optional id that is also accepted.
    counted: optional bool [...] (broadcastable); elements where it is False
      (masked padding) are not checked.
    name: argument name for the message.
  """
  ids = jnp.asarray(ids)
  ok = ids >= 0
  expected = "class ids >= 0"
  if num_classes is not None:
    ok = ok & (ids < num_classes)
    expected = f"class ids in [0, {num_classes})"
  if ignore_index is not None:
    ok = ok | (ids == ignore_index)
    expected += f" or ignore_index={ignore_index}"
  if counted is not None:
    ok = ok | ~jnp.broadcast_to(counted, ids.shape)
  check_all(fn, ok, ids, name=name, expected=expected)


def check_unit_targets(fn: str, targets, *, ignore_index=None, counted=None,
                       name: str = "labels") -> None:
  """Checked mode: binary targets in [0, 1] (or ``ignore_index``), NaN rejected."""
  targets = jnp.asarray(targets)
  ok = (targets >= 0) & (targets <= 1)
  expected = "targets in [0, 1]"
  if ignore_index is not None:
    ok = ok | (targets == ignore_index)
    expected += f" or ignore_index={ignore_index}"
  if counted is not None:
    ok = ok | ~jnp.broadcast_to(counted, targets.shape)
  check_all(fn, ok, targets, name=name, expected=expected)
