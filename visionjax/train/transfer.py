"""Starting a fresh run from other weights (``config.init_from``), and freezing checks.

``init_from`` names either

* converted weights: a folder written by ``python -m visionjax.weights fetch``
  (``visionjax_weights.json`` and an Orbax checkpoint of the variables), or
* another run's workdir: the checkpoint ``init_from_checkpoint`` picks
  ('best' by the run's ``best_metric``, 'latest' when it has none, or a step),
  of which only the parameters and BatchNorm statistics are read (no
  optimizer state, step or RNG: the new run starts at step 0).

Matching is by path. Each model variable (``params/encoder/stem/conv/kernel``,
``batch_stats/encoder/stem/norm/mean``) takes the source variable at the same
path, after ``init_from_rename``'s module-path prefixes are applied to the
source (``'encoder=features'``: the source's ``features/...`` become
``encoder/...``; ``'encoder='``: the whole source goes under ``encoder/``).
Every model variable ends up in one of

  loaded   the source has it, same shape;
  skipped  its path (without the collection) matches the ``init_from_skip``
           regex: left as initialized, whatever the source holds (the place
           for a classifier head whose class count differs);
  random   the source has no such variable (a decoder, a new head);

and source variables nothing took are reported as unused (a classifier's
head when only its encoder is wanted). A shape mismatch outside
``init_from_skip`` is a one-line error naming the path and both shapes, and
so is a source of which nothing matches or a rename/skip that matches
nothing.

Examples: a ResNet classifier (``encoder/`` + ``fc/``) into a U-Net, FCN or
DeepLabV3 with the same ResNet encoder (``encoder/`` + decoder) needs no
option: the encoder loads, the decoder stays random, ``fc`` is unused. A VGG
classifier (``features/``) into SSD300 (``encoder/``) needs
``init_from_rename='encoder=features'``. The same classifier with another
class count needs ``init_from_skip='^fc/'``.

Only a fresh run starts from ``init_from``; a resumed run restores its own
checkpoint (which already holds what ``init_from`` gave it).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from typing import Any, Callable, Mapping, Sequence

import flax.traverse_util as traverse_util
import jax
import numpy as np
import orbax.checkpoint as ocp

from visionjax import paths, weights
from visionjax.train import checkpoint as ckpt_lib
from visionjax.train import config as config_lib
from visionjax.train import optim
from visionjax.train import workdir as workdir_lib
from visionjax.weights import core as weights_core

COLLECTIONS = ("params", "batch_stats")
REPORT_FILE = "init_from.json"


def _flat(variables: Mapping[str, Any]) -> dict[str, Any]:
  """``{'params/encoder/.../kernel': leaf}`` over `COLLECTIONS` (no empty nodes)."""
  flat = traverse_util.flatten_dict({c: variables.get(c) or {} for c in COLLECTIONS}, sep="/")
  return {k: v for k, v in flat.items() if v is not traverse_util.empty_node}


def _shape(leaf: Any) -> tuple[int, ...]:
  return tuple(np.shape(leaf))


def _module_path(path: str) -> str:
  """'params/encoder/stem/conv/kernel' -> 'encoder/stem/conv/kernel'."""
  return path.split("/", 1)[1]


def _rename(path: str, rename: Sequence[tuple[str, str]]) -> str | None:
  """The model-side path of source module path ``path`` (None: no rename applies).

  The longest matching source prefix wins."""
  best = None
  for dst, src in rename:
    if src == "" or path == src or path.startswith(src + "/"):
      if best is None or len(src) > len(best[1]):
        best = (dst, src)
  if best is None:
    return None
  dst, src = best
  rest = path[len(src):].lstrip("/")
  return "/".join(p for p in (dst, rest) if p)


def _modules(flat_paths) -> list[str]:
  return sorted({_module_path(p).split("/", 1)[0] for p in flat_paths})


@dataclasses.dataclass(frozen=True)
class Plan:
  """What `match` decided, by model path (``params/...``, ``batch_stats/...``).

  loaded:  model path -> the source path it takes.
  skipped: model path -> why it stays as initialized (``init_from_skip``, with
           the shapes when they differ).
  random:  model paths the source has no variable for.
  unused:  source paths nothing took.
  sizes:   model path -> number of values (for the report).
  """
  loaded: Mapping[str, str]
  skipped: Mapping[str, str]
  random: tuple[str, ...]
  unused: tuple[str, ...]
  sizes: Mapping[str, int]

  def summary(self, source: str) -> list[str]:
    """The report as a few log lines (modules counted, skipped ones listed)."""

    def by_module(group) -> str:
      counts: dict[str, int] = {}
      for p in group:
        m = _module_path(p).split("/", 1)[0]
        counts[m] = counts.get(m, 0) + 1
      return ", ".join(f"{m} ({n})" for m, n in sorted(counts.items())) or "-"

    def values(group) -> str:
      return f"{sum(self.sizes[p] for p in group):,} values"

    skipped = "; ".join(f"{p} ({why})" for p, why in sorted(self.skipped.items())[:8])
    more = len(self.skipped) - 8
    return [
        f"init_from: {source}",
        f"  loaded {len(self.loaded)} variables, {values(self.loaded)}: "
        f"{by_module(self.loaded)}",
        f"  skipped {len(self.skipped)}" + (f": {skipped}" if skipped else "")
        + (f"; and {more} more" if more > 0 else ""),
        f"  left random {len(self.random)}, {values(self.random)}: {by_module(self.random)}",
        f"  unused in the source {len(self.unused)}: "
        f"{by_module(self.unused) if self.unused else '-'}",
    ]

  def to_json(self, source: str) -> dict[str, Any]:
    return {"source": source, "loaded": dict(self.loaded), "skipped": dict(self.skipped),
            "random": list(self.random), "unused": list(self.unused)}


def match(model: Mapping[str, Any], source: Mapping[str, Any], *,
          rename: Sequence[tuple[str, str]] = (), skip: str = "",
          where: str = "the source") -> Plan:
  """Which model variable takes which source variable (see the module docstring).

  Args:
    model, source: ``{'params': tree, 'batch_stats': tree}``; leaves need only
      a shape (arrays or ``jax.ShapeDtypeStruct``).
    rename: ``((dst_prefix, src_prefix), ...)`` (`config.parse_rename`).
    skip: regex of model module paths to leave as initialized.
    where: how errors name the source.

  Raises:
    ValueError naming the path and both shapes on a shape mismatch outside
    ``skip``, or when nothing matches, a rename source prefix matches no
    source variable, or ``skip`` matches no model variable.
  """
  dst, src = _flat(model), _flat(source)
  taken: dict[str, str] = {}  # model-side path -> source path
  renamed: dict[str, str] = {}
  for path in src:
    collection, rest = path.split("/", 1)
    new = _rename(rest, rename)
    (taken if new is None else renamed)[path if new is None else f"{collection}/{new}"] = path
  taken.update(renamed)  # an explicit rename wins over a name that agrees by chance
  for dst_prefix, src_prefix in rename:
    if not any(_rename(_module_path(p), [(dst_prefix, src_prefix)]) is not None for p in src):
      raise ValueError(f"init_from_rename '{dst_prefix}={src_prefix}': {where} has no module "
                       f"{src_prefix!r}; its top-level modules: {_modules(src)}")
  skip_re = re.compile(skip) if skip else None
  if skip_re and not any(skip_re.search(_module_path(p)) for p in dst):
    example = _module_path(next(iter(dst)))
    raise ValueError(f"init_from_skip={skip!r} matches no variable of the model; its top-level "
                     f"modules: {_modules(dst)} (paths look like {example!r})")
  loaded, skipped, random = {}, {}, []
  for path, leaf in dst.items():
    origin = taken.get(path)
    if skip_re and skip_re.search(_module_path(path)):
      differs = origin is not None and _shape(src[origin]) != _shape(leaf)
      skipped[path] = "init_from_skip" + (
          f"; {where} {_shape(src[origin])}, model {_shape(leaf)}" if differs else "")
    elif origin is None:
      random.append(path)
    elif _shape(src[origin]) != _shape(leaf):
      raise ValueError(
          f"init_from: {path} has shape {_shape(src[origin])} in {where}"
          + (f" (as {origin})" if origin != path else "")
          + f" but {_shape(leaf)} in the model; leave it random with init_from_skip="
          f"'^{re.escape(_module_path(path).split('/')[0])}/' or map another variable with "
          "init_from_rename")
    else:
      loaded[path] = origin
  if not loaded:
    raise ValueError(f"init_from: no variable of {where} has the path and shape of one of the "
                     f"model's; its top-level modules: {_modules(src)}, the model's: "
                     f"{_modules(dst)}; map them with init_from_rename='dst=src'")
  used = set(loaded.values())
  return Plan(loaded=loaded, skipped=skipped, random=tuple(random),
              unused=tuple(p for p in src if p not in used),
              sizes={p: math.prod(_shape(v)) for p, v in dst.items()})


def apply(plan: Plan, model: Mapping[str, Any], source: Mapping[str, Any]) -> dict[str, Any]:
  """``model``'s variables with the loaded ones replaced by the source's, each
  cast to the model variable's dtype and placed with its sharding (if any)."""
  src = _flat(source)

  def put(path: str, leaf: Any) -> Any:
    if path not in plan.loaded:
      return leaf
    value = np.asarray(src[plan.loaded[path]]).astype(leaf.dtype)
    sharding = getattr(leaf, "sharding", None)
    return value if sharding is None else jax.device_put(value, sharding)

  flat = traverse_util.flatten_dict({c: model.get(c) or {} for c in COLLECTIONS},
                                    sep="/", keep_empty_nodes=True)
  return traverse_util.unflatten_dict(
      {p: v if v is traverse_util.empty_node else put(p, v) for p, v in flat.items()}, sep="/")


@dataclasses.dataclass(frozen=True)
class Source:
  """Variables to start from and where they came from (for the report)."""
  variables: Mapping[str, Any]
  description: str


def load_source(path: str, checkpoint: str = "best") -> Source:
  """The variables at ``path``: converted weights or a run's workdir.

  ValueError (one line) when ``path`` is missing or is neither."""
  root = paths.resolve(path)
  if not root.exists():
    raise ValueError(f"init_from={path!r} does not exist")
  info = root / weights_core.INFO_FILE
  if info.exists():
    conv = weights.load(os.fspath(root))
    prov = conv.provenance
    return Source({c: conv.variables.get(c, {}) for c in COLLECTIONS},
                  f"{conv.name} weights from {root} ({prov.source}, "
                  f"{prov.weights or 'weights of unknown origin'})")
  if (root / "config.json").exists() and (root / "checkpoints").is_dir():
    return _from_workdir(workdir_lib.Workdir.existing(root), checkpoint)
  raise ValueError(f"init_from={path!r} is neither converted weights (no {weights_core.INFO_FILE}; "
                   "see python -m visionjax.weights fetch) nor a run's workdir (no config.json "
                   "and checkpoints/)")


def _from_workdir(wd: workdir_lib.Workdir, checkpoint: str) -> Source:
  config = config_lib.from_json(wd.config_json.read_text())
  which = checkpoint
  if which == "best" and not config.checkpoint.best_metric:
    which = "latest"  # said in the description, hence in the report
  ckpt = ckpt_lib.Checkpointer(wd.checkpoints, every_steps=0, keep=1 << 30, async_save=False)
  try:
    step = ckpt_lib.select_step(wd, ckpt, config, which)
    tree = ocp.PyTreeCheckpointer().metadata(
        os.fspath(wd.checkpoints / str(step) / "default")).item_metadata.tree
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = {c: jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype,
                                                               sharding=device), tree[c])
                for c in COLLECTIONS if tree.get(c)}
    variables = ckpt.restore_subset(step, abstract)
  finally:
    ckpt.close()
  why = ("" if which == checkpoint else
         f", 'latest' as the run has no best_metric for {checkpoint!r}")
  return Source({c: variables.get(c, {}) for c in COLLECTIONS},
                f"run {wd.path} ({config.model.name}), step {step} ({which}{why})")


def start_from(config, state: Any, *, engine: Any, tx: Any,
               log: Callable[[str], None] | None = print,
               report_dir: Any = None) -> tuple[Any, Plan]:
  """A fresh ``state`` with ``config.init_from``'s variables loaded (see `match`).

  The optimizer state is rebuilt from the new parameters (``tx.init``); step
  and RNG are the fresh state's. Logs `Plan.summary` through ``log`` and
  writes the full report to ``report_dir/init_from.json`` when given.
  """
  source = load_source(config.init_from, str(config.init_from_checkpoint))
  ck = engine.to_checkpoint(state)
  model = {"params": ck.params, "batch_stats": ck.batch_stats}
  plan = match(model, source.variables, rename=config_lib.parse_rename(config.init_from_rename),
               skip=config.init_from_skip, where=f"init_from {config.init_from!r}")
  merged = apply(plan, model, source.variables)
  opt_state = jax.tree.map(lambda new, old: jax.device_put(new, old.sharding),
                           jax.jit(tx.init)(merged["params"]), ck.opt_state)
  ck = ck.replace(params=merged["params"], batch_stats=merged["batch_stats"] or ck.batch_stats,
                  opt_state=opt_state)
  if log is not None:
    for line in plan.summary(source.description):
      log(line)
  if report_dir is not None:
    (report_dir / REPORT_FILE).write_text(json.dumps(plan.to_json(source.description), indent=2))
  return engine.from_checkpoint(ck), plan


def check_freeze(config, params: Any) -> None:
  """ValueError (one line) when ``config.freeze`` matches no parameter, or
  every one of them (nothing would train)."""
  if not config.freeze:
    return
  mask = jax.tree.leaves(optim.path_mask(params, config.freeze))
  flat = _flat({"params": params})
  if not any(mask):
    raise ValueError(f"freeze={config.freeze!r} matches no parameter of model "
                     f"{config.model.name!r}; its top-level modules: {_modules(flat)} "
                     f"(paths look like {_module_path(next(iter(flat)))!r})")
  if all(mask) and not config.freeze_until_step:
    raise ValueError(f"freeze={config.freeze!r} matches every parameter of model "
                     f"{config.model.name!r}: nothing would train")
