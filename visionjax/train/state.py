"""The train state: a pytree of everything that changes during training."""
from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """Params, BatchNorm statistics, optimizer state, step and RNG.

  Holds arrays only (model and optimizer are bound to the step functions), so
  Orbax saves and restores it as a plain pytree.
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array


def init_state(rng: jax.Array, *, model: nn.Module, tx: optax.GradientTransformation,
               input_shape: tuple[int, ...]) -> TrainState:
  """A fresh state. Pure: jit it with ``out_shardings`` to create it placed.

  Args:
    rng: PRNG key; split into the init key and the state's training key.
    input_shape: [batch, height, width, channels] of a dummy input.
  """
  init_rng, train_rng = jax.random.split(rng)
  variables = model.init({"params": init_rng, "dropout": init_rng},
                         jnp.zeros(input_shape, jnp.float32), train=False)
  params = variables["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get("batch_stats", {}),
                    opt_state=tx.init(params), rng=train_rng)
