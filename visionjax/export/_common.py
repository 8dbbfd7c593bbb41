"""What the exporters share: the exported function, input spec, output names."""
from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
from jax import export as jax_export
import jax.numpy as jnp
import numpy as np

from visionjax.detection.postprocessing import batch_postprocess

SINGLE_OUTPUT = "output"
# The SavedModel signature's input (and the ONNX graph input).
INPUT_NAME = "images"
# Keys SSD post-processing needs in the model's output dict.
DETECTION_KEYS = ("logits", "offsets", "anchors")


def postprocess_kwargs(postprocess: bool | Mapping[str, Any] | None) -> dict | None:
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
  pp = postprocess_kwargs(postprocess)
  variables = dict(variables)

  def fn(images: jax.Array) -> Any:
    out = model.apply(variables, images, train=False)
    return out if pp is None else postprocess_dict(out, pp, type(model).__name__)

  return fn


def input_spec(input_shape: Sequence[int | None], dtype: Any,
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


def named_outputs(names: Sequence[str], values: Sequence[Any]) -> Any:
  """The loaders' output: one array, or a dict by name."""
  if list(names) == [SINGLE_OUTPUT]:
    return values[0]
  return dict(zip(names, values))



def postprocess_dict(out: Mapping[str, Any], pp: dict, model_name: str) -> dict:
  if not isinstance(out, Mapping) or any(k not in out for k in DETECTION_KEYS):
    got = sorted(out) if isinstance(out, Mapping) else f"one {type(out).__name__}"
    raise ValueError(f"postprocess needs a detector returning {DETECTION_KEYS}; "
                     f"{model_name} returned {got}")
  return batch_postprocess(out["logits"], out["offsets"], out["anchors"], **pp)._asdict()


def as_jaxpr_fn(fn: Callable, *specs: Any) -> Callable:
  """``fn`` as an evaluator of its jaxpr, traced now (outside any converter's
  patches) at ``specs``; same inputs and output structure."""
  closed, out_struct = jax.make_jaxpr(fn, return_shape=True)(*specs)
  treedef = jax.tree.structure(out_struct)

  def evaluate(*args):
    flat = jax.core.eval_jaxpr(closed.jaxpr, closed.consts, *jax.tree.leaves(args))
    return jax.tree.unflatten(treedef, flat)

  return evaluate


def first_line(e: BaseException) -> str:
  text = str(e).strip()
  return text.splitlines()[0][:300] if text else "(no message)"


def dist_version(dist: str) -> str:
  try:
    return importlib.metadata.version(dist)
  except importlib.metadata.PackageNotFoundError:
    return "?"


def require(module: str, caller: str):
  try:
    return importlib.import_module(module)
  except ImportError as e:
    raise ImportError(f"{caller} needs {module}: pip install 'visionjax[export]'") from e
