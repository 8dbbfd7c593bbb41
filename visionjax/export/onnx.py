"""ONNX export through ``jax2onnx``, run by onnxruntime."""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
from jax import export as jax_export
import jax.numpy as jnp
import numpy as np

from visionjax.export._common import (
  INPUT_NAME,
  as_jaxpr_fn,
  dist_version,
  first_line,
  inference_fn,
  input_spec,
  named_outputs,
  output_names,
  postprocess_dict,
  postprocess_kwargs,
  require,
)


def export_onnx(model: nn.Module, variables: Mapping[str, Any], path: str | os.PathLike, *,
                input_shape: Sequence[int | None], dtype: Any = jnp.float32,
                postprocess: bool | Mapping[str, Any] | None = None,
                opset: int | None = None) -> str:
  """Writes an ONNX model of :func:`inference_fn` to ``path`` with ``jax2onnx``.

  Input ``images`` [b, H, W, C] (b symbolic when ``input_shape[0]`` is None),
  outputs named by :func:`output_names`; variables become initializers
  (large ones may go to a ``.onnx.data`` file beside ``path``).

  jax2onnx converts in one of two ways, tried in order: (1) tracing the
  function with its Flax/jax.numpy patches active (higher-level ONNX ops),
  (2) converting the plain jaxpr of the function. Post-processing is always
  converted as a jaxpr: jax2onnx's patched ``jnp.shape`` returns a traced
  array, which breaks its Python-level shape checks.

  Raises:
    ValueError: when jax2onnx cannot convert the function (an unsupported
      primitive or pattern), naming the model and each way's error. Known
      with jax2onnx 0.17.1: SSD post-processing (the vmapped NMS writes with a
      batched scatter, which jax2onnx does not lower); with a symbolic batch,
      models that resize (FCN, DeepLabV3, bilinear U-Net: the resize patch
      needs a constant batch), SegNet (``rem`` in its unpooling indices) and
      LeNet-5 (``lax.pad``; its traced way fails on jax2onnx's
      keyword-only ``nn.avg_pool`` patch). All of those but the
      post-processing convert with a fixed batch.
    ImportError: without jax2onnx (``pip install visionjax[export]``).
  """
  j2o = require("jax2onnx", "export_onnx")
  scope = jax_export.SymbolicScope()
  spec = input_spec(input_shape, dtype, scope=scope)
  pp = postprocess_kwargs(postprocess)
  raw = inference_fn(model, variables)
  raw_struct = jax.eval_shape(raw, spec)
  if pp is not None:
    post = as_jaxpr_fn(lambda out: postprocess_dict(out, pp, type(model).__name__),
                        raw_struct)
  names = output_names(jax.eval_shape(inference_fn(model, variables, postprocess=pp), spec))
  kwargs = {} if opset is None else {"opset": opset}
  errors = []
  for how, model_fn in (("traced", raw), ("jaxpr", None)):
    if model_fn is None:
      model_fn = as_jaxpr_fn(raw, spec)
    fn = model_fn if pp is None else (lambda x, f=model_fn: post(f(x)))
    try:
      j2o.to_onnx(fn, [spec], model_name=type(model).__name__, input_names=[INPUT_NAME],
                  output_names=names, return_mode="file", output_path=os.fspath(path),
                  **kwargs)
      return os.fspath(path)
    except Exception as e:  # any converter failure becomes the ValueError below
      errors.append(f"{how}: {type(e).__name__}: {first_line(e)}")
  what = type(model).__name__ + (" with SSD post-processing" if pp is not None else "")
  hint = ""
  if input_shape[0] is None and any("Symbolic dimension" in e for e in errors):
    # Some jax2onnx lowerings (resize, pad, rem) need every dimension known.
    hint = "; a fixed batch, input_shape=(N, H, W, C), may convert"
  raise ValueError(f"jax2onnx {dist_version('jax2onnx')} cannot convert {what} to ONNX; "
                   + "; ".join(errors) + hint)


def load_onnx(path: str | os.PathLike) -> Callable[[Any], Any]:
  """images [B, H, W, C] -> NumPy outputs (one array or a dict), run by
  onnxruntime on CPU."""
  ort = require("onnxruntime", "load_onnx")
  session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
  names = [o.name for o in session.get_outputs()]
  input_name = session.get_inputs()[0].name

  def call(images):
    return named_outputs(names, session.run(names, {input_name: np.asarray(images)}))

  call.session = session
  return call
