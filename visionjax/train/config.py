"""The experiment config schema: defaults every config file starts from.

Experiment configs (``experiments/configs/*.py``) call `base_config()` and
override fields. `validate` rejects keys the schema does not know (so a typo
such as ``optimizer.learnig_rate`` fails loudly instead of being ignored) and
values outside their allowed set. ``config.model`` is free-form: apart from
``name`` its fields are passed to the model constructor, which validates them.
"""
from __future__ import annotations

import json
import re

import ml_collections

from visionjax import tasks
from visionjax.train.optim import OPTIMIZERS, SCHEDULES
from visionjax.train.parallel import ENGINES

# Sub-dicts whose keys are free-form (validated by their consumer).
_FREE_FORM = ("model", "task_kwargs")


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = "classification"
  c.seed = 0
  c.engine = "jit"               # 'jit' (mesh + NamedSharding) or 'pmap'
  c.batch_size = 64              # global, over all devices and hosts
  c.eval_batch_size = 64
  c.num_train_steps = 1000
  c.log_every_steps = 50
  c.eval_every_steps = 0         # 0: evaluate only at the end
  c.half_precision = False       # bfloat16 compute, float32 parameters
  c.num_visualizations = 8       # overlay/prediction images written at the end
  c.progress_bar = True
  c.resume_changed = False       # allow resuming a run with a config that changes its meaning

  # Starting from other weights and freezing (visionjax.train.transfer; fresh runs only).
  c.init_from = ""               # converted weights (`python -m visionjax.weights fetch --out`)
                                 # or another run's workdir; '' = random initialization
  c.init_from_checkpoint = "best"  # of a workdir: 'best' ('latest' if it has no best_metric),
                                   # 'latest' or a step number
  c.init_from_rename = ""        # 'dst=src,...': module-path prefixes, e.g. 'encoder=features'
  c.init_from_skip = ""          # regex: model variables left random (shapes may differ there)
  c.freeze = ""                  # regex: parameters (and BatchNorm statistics) not trained
  c.freeze_until_step = 0        # 0: frozen throughout; N: frozen for the first N steps only
  c.finetune_learning_rate_scale = 1.0  # learning-rate factor from freeze_until_step on

  c.model = ml_collections.ConfigDict({"name": "small_cnn"})
  c.task_kwargs = ml_collections.ConfigDict()  # options of the task class (visionjax.tasks)

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = "digit_scenes/digits32"
  c.dataset.data_dir = ml_collections.FieldReference(None, field_type=str)
  c.dataset.manual_dir = ml_collections.FieldReference(None, field_type=str)
  # Your own data (name 'image_folder', 'mask_folder', 'coco_json' or 'voc_xml'):
  # its folder, and the mask value that marks unlabelled pixels (None: 255).
  c.dataset.path = ml_collections.FieldReference(None, field_type=str)
  c.dataset.ignore_value = ml_collections.FieldReference(None, field_type=int)
  c.dataset.train_split = "train"
  c.dataset.eval_split = "test"
  c.dataset.image_size = ml_collections.FieldReference(None, field_type=tuple)
  c.dataset.mean = (0.5, 0.5, 0.5)
  c.dataset.std = (0.25, 0.25, 0.25)
  c.dataset.shuffle_buffer = 10_000
  c.dataset.augment = ()

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.schedule = "warmup_cosine"
  c.optimizer.warmup_steps = 100
  c.optimizer.end_lr_factor = 0.0
  c.optimizer.pct_start = 0.3
  c.optimizer.boundaries = (0.5, 0.75)
  c.optimizer.decay_factor = 0.1
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = False
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.eps = 1e-8
  c.optimizer.weight_decay = 1e-4
  c.optimizer.grad_clip_norm = 0.0

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every_steps = 500
  c.checkpoint.keep = 3
  c.checkpoint.best_metric = ""  # e.g. 'accuracy' or 'miou'; '' = none
  c.checkpoint.best_mode = "max"
  c.checkpoint.async_save = True
  return c


def _unknown_keys(cfg, ref, prefix=""):
  for k in cfg.keys():
    path = f"{prefix}{k}"
    if k not in ref:
      yield path, sorted(ref.keys())
    elif isinstance(ref[k], ml_collections.ConfigDict) and k not in _FREE_FORM:
      yield from _unknown_keys(cfg[k], ref[k], path + ".")


def _one_of(value, allowed, what):
  if value not in allowed:
    raise ValueError(f"{what}={value!r} is not valid; expected one of {list(allowed)}")


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first bad key or value."""
  for path, valid in _unknown_keys(config, base_config()):
    raise ValueError(f"unknown config key {path!r}; valid keys here: {valid}")
  _one_of(config.task, tasks.NAMES, "task")
  _one_of(config.engine, ENGINES, "engine")
  _one_of(config.optimizer.name, OPTIMIZERS, "optimizer.name")
  _one_of(config.optimizer.schedule, SCHEDULES, "optimizer.schedule")
  _one_of(config.checkpoint.best_mode, ("max", "min"), "checkpoint.best_mode")
  for key in ("batch_size", "eval_batch_size", "num_train_steps", "log_every_steps"):
    if int(config[key]) <= 0:
      raise ValueError(f"{key}={config[key]!r} must be a positive integer")
  # Intervals: 0 means never; a negative one would fire every step.
  for key, value in (("eval_every_steps", config.eval_every_steps),
                     ("checkpoint.every_steps", config.checkpoint.every_steps),
                     ("num_visualizations", config.num_visualizations)):
    if int(value) < 0:
      raise ValueError(f"{key}={value!r} must be >= 0 (0: never)")
  if int(config.checkpoint.keep) < 1:
    raise ValueError(f"checkpoint.keep={config.checkpoint.keep!r} must be >= 1 (it would "
                     "delete every periodic checkpoint)")
  opt = config.optimizer
  if not float(opt.learning_rate) > 0:  # also catches NaN
    raise ValueError(f"optimizer.learning_rate={opt.learning_rate!r} must be > 0 (the "
                     "schedule scales it; a negative rate ascends the loss)")
  for key in ("weight_decay", "grad_clip_norm", "warmup_steps"):
    if not float(opt[key]) >= 0:
      raise ValueError(f"optimizer.{key}={opt[key]!r} must be >= 0")
  metric = config.checkpoint.best_metric
  task_metrics = tasks.REGISTRY[config.task].metrics
  if metric and metric not in task_metrics:
    raise ValueError(f"checkpoint.best_metric={metric!r} is not a metric of task "
                     f"{config.task!r}; expected one of {list(task_metrics)}")
  if "name" not in config.model:
    raise ValueError("config.model needs a 'name' (see visionjax.models.list_models())")
  _validate_transfer(config)


def _validate_transfer(config: ml_collections.ConfigDict) -> None:
  """Syntax and ranges of the init_from/freeze keys (what they match is checked
  against the model by `visionjax.train.transfer`: `match`, `check_freeze`)."""
  for key in ("freeze", "init_from_skip"):
    try:
      re.compile(config[key])
    except re.error as e:
      raise ValueError(f"{key}={config[key]!r} is not a valid regular expression: {e}") from None
  parse_rename(config.init_from_rename)
  which = str(config.init_from_checkpoint)
  if which not in ("best", "latest") and not which.isdigit():
    raise ValueError(f"init_from_checkpoint={which!r}; expected 'best', 'latest' or a step "
                     "number")
  until, scale = int(config.freeze_until_step), float(config.finetune_learning_rate_scale)
  if until < 0:
    raise ValueError(f"freeze_until_step={until} must be >= 0 (0: frozen throughout)")
  if until and not config.freeze:
    raise ValueError(f"freeze_until_step={until} needs a freeze regex (what to freeze "
                     "until then)")
  if until and until >= int(config.num_train_steps):
    raise ValueError(f"freeze_until_step={until} must be < num_train_steps="
                     f"{config.num_train_steps} (the fine-tuning phase would never start)")
  if not scale > 0:
    raise ValueError(f"finetune_learning_rate_scale={scale!r} must be > 0")
  if scale != 1.0 and not until:
    raise ValueError(f"finetune_learning_rate_scale={scale!r} applies from freeze_until_step "
                     "on; set freeze_until_step > 0 (or leave the scale at 1.0)")


def parse_rename(text: str) -> tuple[tuple[str, str], ...]:
  """``'dst=src,dst2=src2'`` -> ``(('dst', 'src'), ('dst2', 'src2'))``.

  Each side is a '/'-joined module path prefix ('' = the root), e.g.
  ``'encoder=features'`` loads the source's ``features/...`` variables into the
  model's ``encoder/...``. ValueError naming the bad entry.
  """
  pairs = []
  for item in filter(None, (t.strip() for t in str(text).split(","))):
    if item.count("=") != 1:
      raise ValueError(f"init_from_rename entry {item!r} is not 'dst=src' (module-path "
                       "prefixes, e.g. 'encoder=features')")
    dst, src = (side.strip().strip("/") for side in item.split("="))
    if (dst, src) == ("", ""):
      raise ValueError(f"init_from_rename entry {item!r} renames nothing")
    pairs.append((dst, src))
  dsts = [d for d, _ in pairs]
  if len(set(dsts)) != len(dsts):
    raise ValueError(f"init_from_rename={text!r} names a destination twice")
  return tuple(pairs)


# Fields a resumed run may change freely: when and how much is logged,
# evaluated, kept and shown, where data lives, how steps are compiled, how long
# it trains. Any other change (seed, batch, model, optimizer, data, task...)
# changes what the run means: `resume_changes` reports it.
RESUMABLE_CHANGES = (
    "num_train_steps", "log_every_steps", "eval_every_steps", "eval_batch_size",
    "num_visualizations", "progress_bar", "engine", "resume_changed",
    "checkpoint.every_steps", "checkpoint.keep", "checkpoint.async_save",
    "dataset.data_dir", "dataset.manual_dir")


def _tuples(v):
  """JSON lists back to the tuples config files use (hashable model fields)."""
  if isinstance(v, list):
    return tuple(_tuples(x) for x in v)
  if isinstance(v, dict):
    return {k: _tuples(x) for k, x in v.items()}
  return v


def from_json(text: str) -> ml_collections.ConfigDict:
  """A config saved by a run (``config.json``) back as a ConfigDict."""
  saved = _tuples(json.loads(text))
  config = base_config()
  config.unlock()
  for key, value in saved.items():
    if isinstance(value, dict) and key in config and isinstance(config[key],
                                                              ml_collections.ConfigDict):
      for k, v in value.items():
        config[key][k] = v
    else:
      config[key] = value
  return config


def _flat(d, prefix=""):
  for k, v in d.items():
    if isinstance(v, dict):
      yield from _flat(v, f"{prefix}{k}.")
    else:
      yield f"{prefix}{k}", v


def resume_changes(saved_json: str, config: ml_collections.ConfigDict
                   ) -> tuple[list[str], list[str]]:
  """``(changes that alter the run, other changes)`` from the saved config to
  ``config``, each as ``'key: old -> new'``. A key the saved config lacks
  (added to the schema after the run started) is no change while it keeps its
  default."""
  old = dict(_flat(json.loads(saved_json)))
  new = dict(_flat(json.loads(config.to_json_best_effort())))
  default = dict(_flat(json.loads(base_config().to_json_best_effort())))
  meaning, other = [], []
  for key in sorted(set(old) | set(new)):
    if key not in old and key in default and new.get(key) == default[key]:
      continue
    if old.get(key) != new.get(key):
      line = f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
      (other if key in RESUMABLE_CHANGES else meaning).append(line)
  return meaning, other


def check_config_file(path: str) -> None:
  """Raises a one-line ValueError when the config file ``path`` (optionally
  ``path:args``) is missing, does not run, or has no ``get_config``."""
  import importlib.util
  import os
  file = path.split(":", 1)[0]
  if not os.path.isfile(file):
    raise ValueError(f"config file {file!r} does not exist")
  spec = importlib.util.spec_from_file_location("_visionjax_config_check", file)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except SyntaxError as e:
    raise ValueError(f"config file {file!r} has a syntax error at line {e.lineno}: "
                     f"{e.msg}") from None
  except Exception as e:  # noqa: BLE001  (whatever the file raises, named)
    raise ValueError(f"config file {file!r} raised {type(e).__name__}: {e}") from None
  if not callable(getattr(module, "get_config", None)):
    raise ValueError(f"config file {file!r} defines no get_config() function")
