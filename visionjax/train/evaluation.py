"""Evaluate a trained run's checkpoint without training.

    metrics = evaluate_workdir("runs/unet", checkpoint="best", split="test")

Reads ``config.json`` back from the workdir (local or ``gs://``), restores
only what evaluation needs (parameters and BatchNorm statistics, no
optimizer state), runs the same exact evaluation as training's final one
(`visionjax.train.loop.evaluate`) and writes ``metrics.json`` and the task's
``predictions.png`` under ``<workdir>/eval/<step>/`` (``metrics_<split>.json``
when a split is named).
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections

from visionjax.train import checkpoint as ckpt_lib
from visionjax.train import config as config_lib
from visionjax.train import loop, parallel, reporting
from visionjax.train import workdir as workdir_lib
from visionjax.train.checkpoint import select_step  # also used by inference.py
from visionjax.train.state import TrainState


def load_config(wd: workdir_lib.Workdir) -> ml_collections.ConfigDict:
  """The resolved config a run saved in its ``config.json``."""
  return config_lib.from_json(wd.config_json.read_text())


def evaluate_workdir(workdir: str | os.PathLike, *, checkpoint: str | int = "latest",
                     split: str | None = None, visualize: bool = True,
                     progress: bool = False) -> dict[str, Any]:
  """Evaluates one checkpoint of a run; returns (and writes) its metrics.

  Args:
    workdir: the run's folder (as given to training).
    checkpoint: 'latest', 'best' (by ``config.checkpoint.best_metric``) or a
      step number.
    split: a split of the run's dataset (TFDS syntax, e.g. 'test' or
      'train[:10%]'); default: the run's ``eval_split``.
  """
  wd = workdir_lib.Workdir.existing(workdir)
  config = load_config(wd)
  if split:
    config.dataset.eval_split = split
  exp = loop.build(config)
  ckpt = ckpt_lib.Checkpointer(wd.checkpoints, every_steps=0, keep=1 << 30,
                               async_save=False)
  try:
    step = select_step(wd, ckpt, config, checkpoint)
    abstract = exp.abstract_state()
    restored = ckpt.restore_subset(step, {"step": abstract.step, "params": abstract.params,
                                          "batch_stats": abstract.batch_stats,
                                          "rng": abstract.rng})
  finally:
    ckpt.close()
  # The optimizer state is not read: evaluation never touches it.
  state = exp.engine.from_checkpoint(TrainState(opt_state=None, **restored))
  metrics = loop.evaluate(exp, state, progress=progress)
  if jax.process_index() == 0:
    out = wd.path / "eval" / str(step)
    out.mkdir(parents=True, exist_ok=True)
    name = f"metrics_{split}.json" if split else "metrics.json"
    (out / name).write_text(json.dumps(reporting.jsonable(
        {"step": step, "split": config.dataset.eval_split, **metrics}), indent=2))
    if visualize:
      loop.visualize_predictions(exp, parallel.host_copy(exp.engine.to_checkpoint(state)),
                                 os.fspath(out / "predictions.png"))
  return metrics
