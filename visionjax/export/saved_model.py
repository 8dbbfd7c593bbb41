"""TF SavedModel export through ``jax2tf`` (variables as ``tf.Variable``s)."""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from visionjax.export._common import (
  INPUT_NAME,
  inference_fn,
  input_spec,
  named_outputs,
  output_names,
  postprocess_kwargs,
  require,
)


def export_saved_model(model: nn.Module, variables: Mapping[str, Any], path: str | os.PathLike,
                       *, input_shape: Sequence[int | None], dtype: Any = jnp.float32,
                       postprocess: bool | Mapping[str, Any] | None = None,
                       platforms: Sequence[str] | None = None) -> str:
  """Writes a TF SavedModel of :func:`inference_fn` to ``path`` (a directory).

  Converted with ``jax2tf`` (native serialization, ``with_gradient=False``);
  the variables are passed to the converted function as ``tf.Variable``s, so
  they live in the SavedModel's checkpoint rather than in the graph.
  Signature ``serving_default``: ``images`` [None|B, H, W, C] -> dict of
  :func:`output_names`. Arguments as :func:`export_stablehlo`.

  Returns:
    ``str(path)``.
  """
  tf = require("tensorflow", "export_saved_model")
  from jax.experimental import jax2tf  # imports TensorFlow: only when used

  spec = input_spec(input_shape, dtype)
  pp = postprocess_kwargs(postprocess)
  names = output_names(jax.eval_shape(inference_fn(model, variables, postprocess=pp), spec))

  def fn(vs, images):
    return inference_fn(model, vs, postprocess=pp)(images)

  poly = "(b, {}, {}, {})".format(*spec.shape[1:]) if input_shape[0] is None else None
  converted = jax2tf.convert(fn, polymorphic_shapes=[None, poly], with_gradient=False,
                             native_serialization_platforms=platforms)
  tf_vars = jax.tree.map(lambda a: tf.Variable(np.asarray(a), trainable=False),
                         dict(variables))
  module = tf.Module()
  # tf.Module tracks variables it can see as attributes; the nested dict stays
  # a plain Python structure for jax2tf, so track a flat list as well.
  module.variables_list = jax.tree.leaves(tf_vars)

  @tf.function(autograph=False, input_signature=[
      tf.TensorSpec([None if input_shape[0] is None else spec.shape[0], *spec.shape[1:]],
                    tf.as_dtype(spec.dtype), name=INPUT_NAME)])
  def serve(images):
    return dict(zip(names, jax.tree.leaves(converted(tf_vars, images))))

  module.serve = serve
  tf.saved_model.save(module, os.fspath(path), signatures={"serving_default": serve})
  return os.fspath(path)


def load_saved_model(path: str | os.PathLike) -> Callable[[Any], Any]:
  """images [B, H, W, C] -> NumPy outputs (one array or a dict), through the
  reloaded SavedModel's ``serving_default`` signature."""
  tf = require("tensorflow", "load_saved_model")
  loaded = tf.saved_model.load(os.fspath(path))
  signature = loaded.signatures["serving_default"]

  def call(images):
    out = signature(**{INPUT_NAME: tf.convert_to_tensor(np.asarray(images))})
    names = sorted(out)  # the signature's dict is unordered; leaves are sorted too
    return named_outputs(names, [out[n].numpy() for n in names])

  call.loaded = loaded  # keeps the restored variables alive with the function
  return call
