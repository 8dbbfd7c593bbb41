"""StableHLO export through ``jax.export`` (variables baked in as constants)."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
from jax import export as jax_export
import jax.numpy as jnp

from visionjax.export._common import inference_fn, input_spec


def export_stablehlo(model: nn.Module, variables: Mapping[str, Any], *,
                     input_shape: Sequence[int | None], dtype: Any = jnp.float32,
                     postprocess: bool | Mapping[str, Any] | None = None,
                     platforms: Sequence[str] | None = None) -> bytes:
  """Serialized ``jax.export`` artifact of :func:`inference_fn`.

  The variables are constants inside the StableHLO module (the artifact is
  self-contained; its size is about the parameters' bytes).

  Args:
    model, variables, postprocess: see :func:`inference_fn`.
    input_shape: (B, H, W, C); B None makes the batch dimension symbolic.
    dtype: input dtype (float32 normalized images).
    platforms: lowering platforms, e.g. ('cpu', 'cuda'); default the current
      backend's.
  Returns:
    bytes for :func:`load_stablehlo`.
  """
  spec = input_spec(input_shape, dtype)
  fn = jax.jit(inference_fn(model, variables, postprocess=postprocess))
  exported = _without_debug_check_effects(jax_export.export(fn, platforms=platforms)(spec))
  return bytes(exported.serialize())


def _without_debug_check_effects(exported: jax_export.Exported) -> jax_export.Exported:
  """``exported`` without the error effects of ``checkify.debug_check``s.

  The box and NMS argument checks in ``visionjax.ops`` (used by SSD
  post-processing) are debug checks: unless run under ``checkify`` they lower
  to nothing, but their error effect stays in the list of the module's
  unordered effects, which ``jax.export`` cannot serialize (no nullary
  constructor). The compiled module does not contain them, so dropping them
  from the list changes nothing that runs.
  """
  def is_check(effect) -> bool:  # jax._src.checkify.ErrorEffect, not public
    return (type(effect).__name__ == "ErrorEffect"
            and type(effect).__module__.endswith("checkify"))

  kept = tuple(e for e in exported.unordered_effects if not is_check(e))
  return dataclasses.replace(exported, unordered_effects=kept)


def load_stablehlo(data: bytes) -> Callable[[jax.Array], Any]:
  """images [B, H, W, C] -> outputs, from :func:`export_stablehlo`'s bytes.

  The callable is ``Exported.call``: it can itself be jitted or re-exported.
  """
  return jax_export.deserialize(bytearray(data)).call
