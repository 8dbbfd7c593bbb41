"""Pure train and eval steps, shared by the jit and pmap engines.

Both steps take keyword-only dependencies (model, optimizer, task) that the
engine binds with ``functools.partial`` before compiling. With
``axis_name=None`` (the jit engine) the batch is the *global* batch, sharded by
XLA; with ``axis_name='batch'`` (pmap) it is one device's share and the step
sums what must be global across devices itself:

  loss      = psum(local loss sum) / psum(local count)
  gradients = psum(d local_sum / d params) / psum(count)   (same thing)
  metrics   = psum of sums; BatchNorm statistics are averaged across devices
              by the model's BatchNorm layers (their ``axis_name``).

So jit over N devices, pmap over N devices and a single device all compute
the same update from the same global batch (up to float reassociation).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from visionjax.train import optim
from visionjax.train.state import TrainState


def _psum(x, axis_name):
  return x if axis_name is None else jax.lax.psum(x, axis_name)


def model_variables(params, batch_stats) -> dict:
  """The variables dict ``model.apply`` takes (``batch_stats`` when the model has any)."""
  return {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}


def train_step(state: TrainState, batch: dict, *, model: nn.Module,
               tx: optax.GradientTransformation, task: Any, schedule: optax.Schedule,
               channels: int, axis_name: str | None = None, freeze: str = "",
               freeze_until_step: int = 0) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step on ``batch``; returns the new state and metrics.

  Metrics: ``loss`` (mean over the global batch), ``grad_norm``,
  ``param_norm``, ``learning_rate`` and the task's training sums.

  ``freeze`` (a regex of variable paths, as `optim.path_mask`; ``tx`` zeroes
  the matching parameters' updates): the matching BatchNorm statistics are
  kept as they were, bit for bit (for the first ``freeze_until_step`` steps
  only, when that is > 0). Frozen BatchNorm layers still normalize by the
  batch's statistics in training, like every other one; only their running
  statistics, which evaluation uses, stay fixed. Keeping them after the update
  needs no change to any model and switches off at a traced step, so a
  two-phase schedule is one compiled step. Frozen throughout, the frozen
  parameters also get no gradient (``stop_gradient``): XLA drops that part of
  the backward pass, and ``grad_norm`` counts the trainable parameters only.
  """
  task.validate(batch, channels)  # static shape/dtype checks at trace time
  rng = jax.random.fold_in(state.rng, state.step)
  if axis_name is not None:
    rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
  has_bn = bool(state.batch_stats)

  frozen_throughout = freeze and not freeze_until_step

  def loss_fn(params):
    if frozen_throughout:
      params = jax.tree.map(lambda p, f: jax.lax.stop_gradient(p) if f else p, params,
                            optim.path_mask(params, freeze))
    out = model.apply(model_variables(params, state.batch_stats), batch["image"], train=True,
                      rngs={"dropout": rng}, mutable=["batch_stats"] if has_bn else False,
                      **task.model_inputs(batch))
    outputs, new_vars = out if has_bn else (out, {})
    task.check_train_outputs(outputs)  # trace time: options vs what the model returns
    loss_sum, count = task.loss(outputs, batch)
    total = jax.lax.stop_gradient(_psum(count, axis_name))
    return loss_sum / jnp.maximum(total, 1), (outputs, new_vars, loss_sum, count)

  grads, (outputs, new_vars, loss_sum, count) = jax.grad(loss_fn, has_aux=True)(state.params)
  grads = _psum(grads, axis_name)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  batch_stats = new_vars.get("batch_stats", state.batch_stats)
  if freeze and state.batch_stats:
    keep = True if not freeze_until_step else state.step < freeze_until_step
    batch_stats = jax.tree.map(lambda f, old, new: jnp.where(keep, old, new) if f else new,
                               optim.path_mask(state.batch_stats, freeze), state.batch_stats,
                               batch_stats)
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                            batch_stats=batch_stats)
  sums = _psum({"loss_sum": loss_sum, "loss_count": count,
                **task.train_sums(outputs, batch)}, axis_name)
  metrics = {
      "loss": sums.pop("loss_sum") / jnp.maximum(sums.pop("loss_count"), 1),
      "grad_norm": optax.global_norm(grads),
      "param_norm": optax.global_norm(params),
      "learning_rate": schedule(state.step),
      **sums,
  }
  return new_state, metrics


def eval_step(state: TrainState, batch: dict, *, model: nn.Module, task: Any,
              channels: int, axis_name: str | None = None
              ) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
  """``(sums, examples)`` on ``batch`` (``batch['valid']`` masks padding).

  ``sums``: the task's evaluation sums, ``psum``-ed over ``axis_name``.
  ``examples``: its per-example outputs (``task.eval_examples``; ``{}`` for
  tasks whose metrics are all sums), per device, not summed: the engine
  gathers them (``engine.fetch_examples``).
  """
  task.validate(batch, channels)
  outputs = model.apply(model_variables(state.params, state.batch_stats), batch["image"],
                        train=False, **task.model_inputs(batch, train=False))
  return _psum(task.eval_sums(outputs, batch), axis_name), task.eval_examples(outputs, batch)


def predict_step(state: TrainState, batch: dict, *, model: nn.Module, task: Any) -> Any:
  """The task's predictions (post-processed model outputs, inference mode) on
  ``batch['image']`` (with what the task's ``model_inputs`` reads, e.g.
  ``content``)."""
  return task.postprocess(
      model.apply(model_variables(state.params, state.batch_stats), batch["image"],
                  train=False, **task.model_inputs(batch, train=False)))
