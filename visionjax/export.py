"""Export a trained model for serving: StableHLO, TF SavedModel and ONNX.

Every exporter takes a Flax module and its variables (``{'params': ...,
'batch_stats': ...}``), independent of the training loop, and exports the
inference function

    images [B, H, W, C] (float32, normalized as in training, NHWC)
        -> model.apply(variables, images, train=False)

optionally followed by SSD post-processing
(:func:`visionjax.detection.postprocessing.batch_postprocess`), which turns
``{'logits', 'offsets', 'anchors'}`` into padded detections ``{'boxes' [B, D, 4],
'scores' [B, D], 'classes' int32 [B, D], 'valid' bool [B, D]}``.

The batch dimension stays symbolic (``input_shape=(None, H, W, C)``): one
artifact serves any batch size. H, W and C are fixed, because the models
derive static things from them (flattened dense heads, SSD default boxes,
U-Net padding).

Formats:
  :func:`export_stablehlo`   serialized ``jax.export.Exported`` (bytes); the
      variables are baked into the module as constants. Reload with
      :func:`load_stablehlo` (JAX only, same or newer JAX within the
      ``jax.export`` compatibility window).
  :func:`export_saved_model` TF SavedModel through ``jax2tf`` (native
      serialization: the StableHLO runs inside TF's ``XlaCallModule`` op);
      the variables are ``tf.Variable``s in the checkpoint, so a large model
      does not hit the 2 GiB GraphDef limit. Serving signature
      ``serving_default(images) -> {name: tensor}``.
  :func:`export_onnx`        ONNX through ``jax2onnx`` (``pip install
      visionjax[export]``); variables are initializers. Reload with
      :func:`load_onnx` (onnxruntime).

StableHLO and the SavedModel are compiled for ``platforms`` (default: the
exporting machine's backend, so a CPU export runs only on CPU); pass e.g.
``platforms=('cpu', 'cuda')`` to serve the same artifact on GPU.

Output names (SavedModel signature, ONNX outputs): the dict keys of the
model's output, or ``'output'`` for a single array. The loaders give back
that structure: a dict, or one array.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import os
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
from jax import export as jax_export
import jax.numpy as jnp
import numpy as np

from visionjax.detection.postprocessing import batch_postprocess

__all__ = ["inference_fn", "export_stablehlo", "load_stablehlo", "export_saved_model",
           "load_saved_model", "export_onnx", "load_onnx", "output_names"]

# Name of the one output when the model returns a single array.
SINGLE_OUTPUT = "output"
# The SavedModel signature's input (and the ONNX graph input).
INPUT_NAME = "images"
# Keys SSD post-processing needs in the model's output dict.
_DETECTION_KEYS = ("logits", "offsets", "anchors")


def _postprocess_kwargs(postprocess: bool | Mapping[str, Any] | None) -> dict | None:
  if postprocess is None or postprocess is False:
    return None
  if postprocess is True:
    return {}
  if isinstance(postprocess, Mapping):
    return dict(postprocess)
  raise ValueError(f"postprocess={postprocess!r}; expected None, a bool or a mapping of "
                   "batch_postprocess keyword arguments")


def inference_fn(model: nn.Module, variables: Mapping[str, Any], *,
                 postprocess: bool | Mapping[str, Any] | None = None
                 ) -> Callable[[jax.Array], Any]:
  """The exported function: images [B, H, W, C] -> ``model.apply(.., train=False)``.

  Args:
    model: a Flax module whose ``__call__`` takes ``(images, train=...)``.
    variables: ``{'params': ..., 'batch_stats': ...}`` (as ``model.init`` gives).
    postprocess: None/False for the raw outputs; True (defaults) or a mapping
      of :func:`batch_postprocess` keyword arguments (``max_detections``,
      ``score_threshold``, ...) to append SSD post-processing to a detector
      whose output is ``{'logits', 'offsets', 'anchors'}``. Its output is then
      ``{'boxes', 'scores', 'classes', 'valid'}`` padded to ``max_detections``.
  """
  pp = _postprocess_kwargs(postprocess)
  variables = dict(variables)

  def fn(images: jax.Array) -> Any:
    out = model.apply(variables, images, train=False)
    return out if pp is None else _postprocess_dict(out, pp, type(model).__name__)

  return fn


def _input_spec(input_shape: Sequence[int | None], dtype: Any,
                scope: jax_export.SymbolicScope | None = None) -> jax.ShapeDtypeStruct:
  """[B, H, W, C] spec; B = None becomes the symbolic dimension 'b'."""
  shape = tuple(input_shape)
  if len(shape) != 4:
    raise ValueError(f"input_shape={shape}; expected (B, H, W, C) with B None for a "
                     "dynamic batch")
  if not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape[1:]):
    raise ValueError(f"input_shape={shape}: H, W and C must be positive ints (only the "
                     "batch dimension can be dynamic: models derive static shapes from H, W)")
  if shape[0] is None:
    spec = jax_export.symbolic_shape("b, {}, {}, {}".format(*shape[1:]), scope=scope)
  elif isinstance(shape[0], (int, np.integer)) and shape[0] > 0:
    spec = tuple(int(d) for d in shape)
  else:
    raise ValueError(f"input_shape={shape}: batch must be None (dynamic) or a positive int")
  return jax.ShapeDtypeStruct(spec, jnp.dtype(dtype))


def output_names(out_struct: Any) -> list[str]:
  """Names of the flattened outputs (in ``jax.tree.leaves`` order).

  A single array is ``['output']``; a flat dict gives its keys (sorted, as JAX
  flattens dicts). Nested or tuple outputs are refused: the formats with named
  outputs (SavedModel, ONNX) could not give the structure back.
  """
  if not isinstance(out_struct, Mapping):
    if len(jax.tree.leaves(out_struct)) == 1 and not isinstance(out_struct, (tuple, list)):
      return [SINGLE_OUTPUT]
    raise ValueError(f"cannot name the outputs of structure {jax.tree.structure(out_struct)}; "
                     "expected one array or a flat dict of arrays")
  names = []
  for path, _ in jax.tree_util.tree_flatten_with_path(out_struct)[0]:
    if len(path) != 1 or not isinstance(path[0], jax.tree_util.DictKey):
      raise ValueError(f"cannot name the outputs of structure "
                       f"{jax.tree.structure(out_struct)}; expected a flat dict of arrays")
    names.append(str(path[0].key))
  return names


def _named(names: Sequence[str], values: Sequence[Any]) -> Any:
  """The loaders' output: one array, or a dict by name."""
  if list(names) == [SINGLE_OUTPUT]:
    return values[0]
  return dict(zip(names, values))


# ------------------------------------------------------------------ StableHLO


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
  spec = _input_spec(input_shape, dtype)
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


# ------------------------------------------------------------- TF SavedModel


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
  tf = _require("tensorflow", "export_saved_model")
  from jax.experimental import jax2tf  # imports TensorFlow: only when used

  spec = _input_spec(input_shape, dtype)
  pp = _postprocess_kwargs(postprocess)
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
  tf = _require("tensorflow", "load_saved_model")
  loaded = tf.saved_model.load(os.fspath(path))
  signature = loaded.signatures["serving_default"]

  def call(images):
    out = signature(**{INPUT_NAME: tf.convert_to_tensor(np.asarray(images))})
    names = sorted(out)  # the signature's dict is unordered; leaves are sorted too
    return _named(names, [out[n].numpy() for n in names])

  call.loaded = loaded  # keeps the restored variables alive with the function
  return call


# ---------------------------------------------------------------------- ONNX


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
  j2o = _require("jax2onnx", "export_onnx")
  scope = jax_export.SymbolicScope()
  spec = _input_spec(input_shape, dtype, scope=scope)
  pp = _postprocess_kwargs(postprocess)
  raw = inference_fn(model, variables)
  raw_struct = jax.eval_shape(raw, spec)
  if pp is not None:
    post = _as_jaxpr_fn(lambda out: _postprocess_dict(out, pp, type(model).__name__),
                        raw_struct)
  names = output_names(jax.eval_shape(inference_fn(model, variables, postprocess=pp), spec))
  kwargs = {} if opset is None else {"opset": opset}
  errors = []
  for how, model_fn in (("traced", raw), ("jaxpr", None)):
    if model_fn is None:
      model_fn = _as_jaxpr_fn(raw, spec)
    fn = model_fn if pp is None else (lambda x, f=model_fn: post(f(x)))
    try:
      j2o.to_onnx(fn, [spec], model_name=type(model).__name__, input_names=[INPUT_NAME],
                  output_names=names, return_mode="file", output_path=os.fspath(path),
                  **kwargs)
      return os.fspath(path)
    except Exception as e:  # any converter failure becomes the ValueError below
      errors.append(f"{how}: {type(e).__name__}: {_first_line(e)}")
  what = type(model).__name__ + (" with SSD post-processing" if pp is not None else "")
  hint = ""
  if input_shape[0] is None and any("Symbolic dimension" in e for e in errors):
    # Some jax2onnx lowerings (resize, pad, rem) need every dimension known.
    hint = "; a fixed batch, input_shape=(N, H, W, C), may convert"
  raise ValueError(f"jax2onnx {_version('jax2onnx')} cannot convert {what} to ONNX; "
                   + "; ".join(errors) + hint)


def load_onnx(path: str | os.PathLike) -> Callable[[Any], Any]:
  """images [B, H, W, C] -> NumPy outputs (one array or a dict), run by
  onnxruntime on CPU."""
  ort = _require("onnxruntime", "load_onnx")
  session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
  names = [o.name for o in session.get_outputs()]
  input_name = session.get_inputs()[0].name

  def call(images):
    return _named(names, session.run(names, {input_name: np.asarray(images)}))

  call.session = session
  return call


def _postprocess_dict(out: Mapping[str, Any], pp: dict, model_name: str) -> dict:
  if not isinstance(out, Mapping) or any(k not in out for k in _DETECTION_KEYS):
    got = sorted(out) if isinstance(out, Mapping) else f"one {type(out).__name__}"
    raise ValueError(f"postprocess needs a detector returning {_DETECTION_KEYS}; "
                     f"{model_name} returned {got}")
  return batch_postprocess(out["logits"], out["offsets"], out["anchors"], **pp)._asdict()


def _as_jaxpr_fn(fn: Callable, *specs: Any) -> Callable:
  """``fn`` as an evaluator of its jaxpr, traced now (outside any converter's
  patches) at ``specs``; same inputs and output structure."""
  closed, out_struct = jax.make_jaxpr(fn, return_shape=True)(*specs)
  treedef = jax.tree.structure(out_struct)

  def evaluate(*args):
    flat = jax.core.eval_jaxpr(closed.jaxpr, closed.consts, *jax.tree.leaves(args))
    return jax.tree.unflatten(treedef, flat)

  return evaluate


def _first_line(e: BaseException) -> str:
  text = str(e).strip()
  return text.splitlines()[0][:300] if text else "(no message)"


def _version(dist: str) -> str:
  try:
    return importlib.metadata.version(dist)
  except importlib.metadata.PackageNotFoundError:
    return "?"


def _require(module: str, caller: str):
  try:
    return importlib.import_module(module)
  except ImportError as e:
    raise ImportError(f"{caller} needs {module}: pip install 'visionjax[export]'") from e
