"""Optimizers and learning-rate schedules from config, built on optax.

``config.optimizer`` fields:
  name            'sgd' | 'adam' | 'adamw'
  learning_rate   peak learning rate
  schedule        'constant' | 'warmup_cosine' | 'one_cycle' | 'piecewise'
  warmup_steps    (warmup_cosine) linear warmup length
  end_lr_factor   (warmup_cosine) final lr = learning_rate * end_lr_factor
  boundaries      (piecewise) fractions of training, e.g. (0.5, 0.75)
  decay_factor    (piecewise) lr multiplier at each boundary, e.g. 0.1
  momentum, nesterov  (sgd)
  b1, b2, eps     (adam/adamw)
  weight_decay    decoupled (adamw) or L2-added (sgd/adam); never applied to
                  biases or normalization scales (rank <= 1 parameters)
  grad_clip_norm  clip by global norm when > 0
"""
from __future__ import annotations

import jax
import ml_collections
import optax

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "warmup_cosine", "one_cycle", "piecewise")


def make_schedule(oc: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Learning rate as a function of the step."""
  lr, name = oc.learning_rate, oc.get("schedule", "constant")
  if name == "constant":
    return optax.constant_schedule(lr)
  if name == "warmup_cosine":
    warmup = min(oc.get("warmup_steps", 0), max(total_steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=lr, warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1),
        end_value=lr * oc.get("end_lr_factor", 0.0))
  if name == "one_cycle":
    return optax.cosine_onecycle_schedule(
        transition_steps=max(total_steps, 1), peak_value=lr,
        pct_start=oc.get("pct_start", 0.3))
  if name == "piecewise":
    bounds = {int(f * total_steps): oc.get("decay_factor", 0.1)
              for f in oc.get("boundaries", (0.5, 0.75))}
    return optax.piecewise_constant_schedule(lr, bounds)
  raise ValueError(f"unknown schedule {name!r}; expected one of {SCHEDULES}")


def decay_mask(params):
  """True for parameters that get weight decay: kernels, not biases/scales."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(oc: ml_collections.ConfigDict, total_steps: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optax chain (clip -> decay -> optimizer) and its schedule."""
  name = oc.name
  if name not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")
  schedule = make_schedule(oc, total_steps)
  wd = oc.get("weight_decay", 0.0)
  parts = []
  if oc.get("grad_clip_norm", 0.0) > 0:
    parts.append(optax.clip_by_global_norm(oc.grad_clip_norm))
  if name == "adamw":
    parts.append(optax.adamw(schedule, b1=oc.get("b1", 0.9), b2=oc.get("b2", 0.999),
                             eps=oc.get("eps", 1e-8), weight_decay=wd,
                             mask=decay_mask))
  else:
    if wd > 0:  # classic L2: added to the gradient before the optimizer
      parts.append(optax.add_decayed_weights(wd, mask=decay_mask))
    if name == "sgd":
      parts.append(optax.sgd(schedule, momentum=oc.get("momentum", 0.9) or None,
                             nesterov=oc.get("nesterov", False)))
    else:
      parts.append(optax.adam(schedule, b1=oc.get("b1", 0.9), b2=oc.get("b2", 0.999),
                              eps=oc.get("eps", 1e-8)))
  return optax.chain(*parts), schedule
