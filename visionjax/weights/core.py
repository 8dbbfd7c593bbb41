"""What every converter returns, the checked tree filling, and the files.

A converter turns another library's weights into a `Converted`: the
visionjax registry name and `create` overrides that rebuild the network,
the variables `{'params': ..., 'batch_stats': ...}` it takes, the
`Preprocessing` the weights expect and their `Provenance`.

`VariableFiller` is the one way a converter writes variables: it starts from
the model's own `jax.eval_shape(model.init)` tree and refuses a missing
leaf, an unknown path, a second write or a wrong shape, so a mapping either
covers the whole network exactly or fails loudly.

`save` writes an Orbax checkpoint of the variables plus a JSON with the
model name, overrides, preprocessing and provenance; `load` reads them back.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

INFO_FILE = "visionjax_weights.json"
CHECKPOINT_DIR = "variables"
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """How to turn an image into the network's input for these weights.

  Images are RGB [..., H, W, 3] with values in `value_range` (e.g. (0, 1)
  for torchvision, (0, 255) for Keras' and torchvision's SSD); the network
  takes `(image - mean) / std`, per channel, in RGB order (converters flip
  BGR weights so callers never reorder channels).

  input_size:    (H, W) the weights were evaluated at: the centre crop for
                 classifiers, the fixed resize of SSD300; None when any size
                 is used as is (segmentation).
  resize_size:   the shorter side an image is resized to before the centre
                 crop (classifiers) or the evaluation resize (segmentation);
                 None: no such resize.
  interpolation: the resize filter ('bilinear', 'bicubic', ...).
  """
  mean: Tuple[float, float, float]
  std: Tuple[float, float, float]
  value_range: Tuple[float, float] = (0.0, 1.0)
  input_size: Optional[Tuple[int, int]] = None
  resize_size: Optional[int] = None
  interpolation: str = "bilinear"
  channel_order: str = "RGB"

  def normalize(self, images: Any) -> jax.Array:
    """[..., H, W, 3] in `value_range` -> float32 network input."""
    x = jnp.asarray(images, jnp.float32)
    return (x - jnp.asarray(self.mean, jnp.float32)) / jnp.asarray(
        self.std, jnp.float32)

  def from_uint8(self, images: Any) -> jax.Array:
    """uint8 [..., H, W, 3] in 0..255 -> float32 network input."""
    lo, hi = self.value_range
    x = jnp.asarray(images, jnp.float32) / 255.0 * (hi - lo) + lo
    return self.normalize(x)

  def to_json(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, d: Mapping[str, Any]) -> "Preprocessing":
    d = dict(d)
    for k in ("mean", "std", "value_range", "input_size"):
      if d.get(k) is not None:
        d[k] = tuple(d[k])
    return cls(**d)


@dataclasses.dataclass(frozen=True)
class Provenance:
  """Where converted weights came from and under which terms.

  source:        'torchvision' | 'keras'.
  source_model:  the model's name there ('resnet50', 'ResNet50').
  weights:       the named weights ('ResNet50_Weights.IMAGENET1K_V2',
                 'imagenet'); None for weights of unknown origin (a module
                 or state dict handed in directly).
  url:           where those weights are published, if known.
  file:          the local file converted, if any, and its `sha256`.
  dataset:       what they were trained on.
  license:       the terms as the source states them (a summary, not legal
                 advice).
  library_versions: versions of the libraries that did the conversion.
  metrics:       the accuracy the source reports for the weights.
  categories:    class names, index i = output i (background first for
                 torchvision's detection and segmentation weights).
  notes:         what the conversion changed or dropped.
  """
  source: str
  source_model: str
  weights: Optional[str] = None
  url: Optional[str] = None
  file: Optional[str] = None
  sha256: Optional[str] = None
  dataset: Optional[str] = None
  license: Optional[str] = None
  library_versions: Mapping[str, str] = dataclasses.field(
      default_factory=dict)
  metrics: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  categories: Optional[Sequence[str]] = None
  notes: Sequence[str] = ()

  def to_json(self) -> Dict[str, Any]:
    d = dataclasses.asdict(self)
    d["notes"] = list(self.notes)
    d["categories"] = (None if self.categories is None
                       else list(self.categories))
    return d

  @classmethod
  def from_json(cls, d: Mapping[str, Any]) -> "Provenance":
    d = dict(d)
    d["notes"] = tuple(d.get("notes") or ())
    if d.get("categories") is not None:
      d["categories"] = tuple(d["categories"])
    return cls(**d)


@dataclasses.dataclass
class Converted:
  """Converted weights and everything needed to use them.

  `model()` builds `models.create(name, **model_kwargs)`; then
  `model().apply(variables, preprocessing.normalize(images))`.
  """
  name: str
  model_kwargs: Dict[str, Any]
  variables: Dict[str, Any]
  preprocessing: Preprocessing
  provenance: Provenance

  def model(self, **overrides: Any):
    from visionjax import models  # pylint: disable=import-outside-toplevel
    return models.create(self.name, **{**self.model_kwargs, **overrides})


def abstract_variables(name: str, model_kwargs: Mapping[str, Any]
                       ) -> Dict[str, Any]:
  """`jax.eval_shape(model.init)` of a registered model: shapes, no memory."""
  from visionjax import models  # pylint: disable=import-outside-toplevel
  spec = models.spec_of(name)
  model = models.create(name, **model_kwargs)
  x = jax.ShapeDtypeStruct((1, *spec.input_size, spec.in_channels),
                           jnp.float32)
  return dict(jax.eval_shape(model.init, jax.random.key(0), x))


def _flatten(tree: Mapping[str, Any], prefix: Tuple[str, ...] = ()
             ) -> Dict[Tuple[str, ...], Any]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(_flatten(v, prefix + (k,)))
    else:
      out[prefix + (k,)] = v
  return out


def _unflatten(flat: Mapping[Tuple[str, ...], Any]) -> Dict[str, Any]:
  out: Dict[str, Any] = {}
  for path, v in flat.items():
    node = out
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = v
  return out


class VariableFiller:
  """Fills a model's variables leaf by leaf, checking paths and shapes.

  Paths are '/'-joined, starting with the collection:
  'params/encoder/stem/conv/kernel', 'batch_stats/encoder/stem/norm/mean'.
  """

  def __init__(self, abstract: Mapping[str, Any]):
    self._want = _flatten(abstract)
    self._got: Dict[Tuple[str, ...], np.ndarray] = {}

  def set(self, path: str, value: Any) -> None:
    key = tuple(path.split("/"))
    if key not in self._want:
      near = sorted("/".join(k) for k in self._want
                    if k[:-1] == key[:-1])[:8]
      raise KeyError(f"{path!r} is not a variable of the model"
                     + (f"; siblings: {near}" if near else ""))
    if key in self._got:
      raise KeyError(f"{path!r} was written twice")
    value = np.asarray(value, np.float32)
    want = tuple(self._want[key].shape)
    if value.shape != want:
      raise ValueError(f"{path!r}: converted shape {value.shape}, the model "
                       f"expects {want}")
    self._got[key] = np.ascontiguousarray(value)

  def done(self) -> Dict[str, Any]:
    """The variables dict (on JAX's default device); raises if any leaf
    was not written."""
    missing = sorted("/".join(k) for k in self._want if k not in self._got)
    if missing:
      raise ValueError(f"{len(missing)} model variables were not converted, "
                       f"e.g. {missing[:5]}")
    # Moved once here, so each `apply` does not copy host arrays again.
    out = jax.device_put(_unflatten(self._got))
    self._got = {}
    return out


class SourceReader:
  """A state dict (name -> array) that records which entries were read.

  `finish()` raises on entries no mapping consumed, except names matching
  `ignore` prefixes/suffixes, so a mapping cannot silently drop weights.
  """

  def __init__(self, arrays: Mapping[str, np.ndarray]):
    self._arrays = dict(arrays)
    self._read: set = set()

  def __contains__(self, name: str) -> bool:
    return name in self._arrays

  def keys(self):
    return self._arrays.keys()

  def peek(self, name: str) -> np.ndarray:
    """Entry `name` without marking it read (to inspect shapes)."""
    return self._arrays[name]

  def __getitem__(self, name: str) -> np.ndarray:
    if name not in self._arrays:
      raise KeyError(f"the source weights have no entry {name!r}")
    self._read.add(name)
    return self._arrays[name]

  def finish(self, ignore_prefixes: Sequence[str] = (),
             ignore_suffixes: Sequence[str] = ()) -> None:
    left = sorted(k for k in self._arrays if k not in self._read
                  and not k.startswith(tuple(ignore_prefixes))
                  and not k.endswith(tuple(ignore_suffixes)))
    if left:
      raise ValueError(f"{len(left)} source weights have no place in the "
                       f"visionjax model, e.g. {left[:5]}")


def sha256_of(path: str) -> str:
  import hashlib  # pylint: disable=import-outside-toplevel
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def save(converted: Converted, out_dir: str) -> str:
  """Writes `out_dir`/variables (Orbax) and `out_dir`/visionjax_weights.json.

  Returns the absolute `out_dir`. An existing checkpoint there is replaced.
  """
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  out_dir = os.path.abspath(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  ckpt = ocp.StandardCheckpointer()
  ckpt.save(os.path.join(out_dir, CHECKPOINT_DIR), converted.variables,
            force=True)
  ckpt.wait_until_finished()
  ckpt.close()
  info = {
      "format_version": FORMAT_VERSION,
      "model": converted.name,
      "model_kwargs": converted.model_kwargs,
      "checkpoint": CHECKPOINT_DIR,
      "preprocessing": converted.preprocessing.to_json(),
      "provenance": converted.provenance.to_json(),
  }
  with open(os.path.join(out_dir, INFO_FILE), "w") as f:
    json.dump(info, f, indent=2)
    f.write("\n")
  return out_dir


def load(out_dir: str) -> Converted:
  """Reads back what `save` wrote (variables restored as host arrays)."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  out_dir = os.path.abspath(out_dir)
  with open(os.path.join(out_dir, INFO_FILE)) as f:
    info = json.load(f)
  if info.get("format_version") != FORMAT_VERSION:
    raise ValueError(f"{out_dir}: format_version "
                     f"{info.get('format_version')!r}, expected "
                     f"{FORMAT_VERSION}")
  # Restoring against the model's own shapes checks them on the way in.
  target = abstract_variables(info["model"], info["model_kwargs"])
  ckpt = ocp.StandardCheckpointer()
  variables = ckpt.restore(os.path.join(out_dir, info["checkpoint"]), target)
  ckpt.close()
  return Converted(info["model"], dict(info["model_kwargs"]), dict(variables),
                   Preprocessing.from_json(info["preprocessing"]),
                   Provenance.from_json(info["provenance"]))
