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

Freezing (``make_optimizer(..., freeze=regex)``; top-level config keys
``freeze``, ``freeze_until_step``, ``finetune_learning_rate_scale``): the
parameters whose '/'-joined path (``encoder/stem/conv/kernel``) the regex
finds (``re.search``) form a second `optax.multi_transform` group that gets
zero updates: no optimizer step, no weight decay, no optimizer state, not in
the clipping norm. With ``freeze_until_step=N`` that group is
`optax.transforms.conditionally_mask`-ed instead: zero for the first N steps,
then its own copy of the optimizer (fresh moments, the schedule at the global
step), and from step N on every parameter's learning rate is multiplied by
``finetune_learning_rate_scale``: head first, then everything at a lower
rate, in one run. (BatchNorm statistics are the train step's business:
`visionjax.train.steps.train_step`.)
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
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


def leaf_path(keys) -> str:
  """A pytree key path as the '/'-joined string freeze and init_from match
  (``'encoder/stem/conv/kernel'``)."""
  return jax.tree_util.keystr(keys, simple=True, separator="/")


def path_mask(tree, pattern: str):
  """A tree like ``tree`` of Python bools: whether ``re.search(pattern, path)``
  finds the leaf's `leaf_path`. Static (computed from the structure alone),
  so usable at trace time."""
  regex = re.compile(pattern)
  return jax.tree_util.tree_map_with_path(
      lambda keys, _: bool(regex.search(leaf_path(keys))), tree)


def _frozen_labels(pattern: str):
  return lambda params: jax.tree.map(lambda f: "frozen" if f else "train",
                                     path_mask(params, pattern))


def _optimizer(oc: ml_collections.ConfigDict, schedule: optax.Schedule
               ) -> list[optax.GradientTransformation]:
  """Weight decay and the optimizer proper (no clipping), as chain parts
  (kept flat: the optimizer state's structure is what checkpoints hold)."""
  name, wd = oc.name, oc.get("weight_decay", 0.0)
  if name == "adamw":
    return [optax.adamw(schedule, b1=oc.get("b1", 0.9), b2=oc.get("b2", 0.999),
                        eps=oc.get("eps", 1e-8), weight_decay=wd, mask=decay_mask)]
  parts = []
  if wd > 0:  # classic L2: added to the gradient before the optimizer
    parts.append(optax.add_decayed_weights(wd, mask=decay_mask))
  if name == "sgd":
    parts.append(optax.sgd(schedule, momentum=oc.get("momentum", 0.9) or None,
                           nesterov=oc.get("nesterov", False)))
  else:
    parts.append(optax.adam(schedule, b1=oc.get("b1", 0.9), b2=oc.get("b2", 0.999),
                            eps=oc.get("eps", 1e-8)))
  return parts


def make_optimizer(oc: ml_collections.ConfigDict, total_steps: int, *, freeze: str = "",
                   freeze_until_step: int = 0, finetune_learning_rate_scale: float = 1.0
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optax chain (clip -> decay -> optimizer) and its schedule.

  ``freeze``: a regex of parameter paths kept fixed (see the module
  docstring), for the first ``freeze_until_step`` steps only when that is
  > 0. The returned schedule is the one the trainable group follows (scaled
  by ``finetune_learning_rate_scale`` from ``freeze_until_step`` on).
  """
  if oc.name not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {oc.name!r}; expected one of {OPTIMIZERS}")
  schedule = make_schedule(oc, total_steps)
  clip = oc.get("grad_clip_norm", 0.0)
  if not freeze:
    return optax.chain(*([optax.clip_by_global_norm(clip)] if clip > 0 else []),
                       *_optimizer(oc, schedule)), schedule
  until, scale = int(freeze_until_step), float(finetune_learning_rate_scale)
  labels = _frozen_labels(freeze)
  if until:
    phased = lambda step: schedule(step) * jnp.where(step < until, 1.0, scale)
    # The frozen group's optimizer counts only its own (phase-2) updates.
    later = lambda count: phased(count + until)
    unfrozen = lambda count: count >= until
    frozen_grads = optax.transforms.conditionally_mask(optax.identity(), unfrozen)
    frozen_opt = optax.transforms.conditionally_mask(optax.chain(*_optimizer(oc, later)),
                                                     unfrozen)
  else:
    phased = schedule
    frozen_grads = frozen_opt = optax.set_to_zero()
  parts = []
  if clip > 0:  # the clipping norm counts only the parameters that train
    parts += [optax.multi_transform({"train": optax.identity(), "frozen": frozen_grads},
                                    labels),
              optax.clip_by_global_norm(clip)]
  parts.append(optax.multi_transform({"train": optax.chain(*_optimizer(oc, phased)),
                                      "frozen": frozen_opt},
                                     labels))
  return optax.chain(*parts), phased
