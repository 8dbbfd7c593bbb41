"""Shared helpers for the training-spine tests (imported by test modules)."""
from __future__ import annotations

import os
import subprocess
import sys

import ml_collections

from visionjax.train.config import base_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CNN_CONFIG = os.path.join(REPO, "experiments", "configs", "cnn_digits.py")


def tiny_config(data_dir: str, task: str = "classification",
                **overrides) -> ml_collections.ConfigDict:
  """A config that trains in seconds on `digit_scenes/tiny` (32x32)."""
  c = base_config()
  c.task = task
  c.dataset.name = "digit_scenes/tiny"
  c.dataset.data_dir = data_dir
  c.model.name = "small_cnn" if task == "classification" else "unet_small"
  if task == "segmentation":
    c.model.features = (4, 8, 16)  # still 2 levels of BatchNorm/skips; compiles fast
  c.batch_size = 16
  c.eval_batch_size = 16
  c.num_train_steps = 4
  c.log_every_steps = 2
  c.optimizer.warmup_steps = 0
  c.optimizer.schedule = "constant"
  c.checkpoint.every_steps = 0
  c.checkpoint.async_save = True
  c.num_visualizations = 2
  c.progress_bar = False
  for k, v in overrides.items():
    node = c
    *path, last = k.split(".")
    for p in path:
      node = node[p]
    node[last] = v
  return c


def run_train_cli(config_file: str, workdir: str, *flags: str, timeout: int = 300,
                  background: bool = False):
  """Runs `experiments/train.py` in a fresh process (8 CPU devices)."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
  env["JAX_PLATFORMS"] = "cpu"
  cmd = [sys.executable, os.path.join(REPO, "experiments", "train.py"),
         f"--config={config_file}", f"--workdir={workdir}", *flags]
  if background:
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
  return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True,
                        timeout=timeout)


def tiny_cli_flags(data_dir: str, steps: int, *extra: str) -> tuple[str, ...]:
  """`experiments/train.py` flags that turn CNN_CONFIG into a seconds-long run."""
  return ("--config.dataset.name=digit_scenes/tiny", f"--config.dataset.data_dir={data_dir}",
          f"--config.num_train_steps={steps}", "--config.batch_size=16",
          "--config.eval_batch_size=16", "--config.log_every_steps=1",
          "--config.optimizer.schedule=constant", "--config.checkpoint.every_steps=0",
          "--config.num_visualizations=2", *extra)


def task_for(config: ml_collections.ConfigDict):
  """The config's task, with the class count of its dataset."""
  from visionjax import tasks
  from visionjax.data import pipeline
  data = pipeline.resolve(config.dataset)
  cls = tasks.REGISTRY[config.task]
  return data, tasks.create(config.task, data.num_classes(cls.annotation),
                            **config.task_kwargs.to_dict())


def train_dataset(config: ml_collections.ConfigDict, start_step: int = 0):
  """`pipeline.train_dataset` for a whole experiment config."""
  from visionjax.data import pipeline
  data, task = task_for(config)
  return pipeline.train_dataset(data, task, batch_size=config.batch_size, seed=config.seed,
                                start_step=start_step)


def eval_batches(config: ml_collections.ConfigDict, split: str | None = None):
  """`pipeline.eval_batches` for a whole experiment config."""
  from visionjax.data import pipeline
  data, task = task_for(config)
  return pipeline.eval_batches(data, task, split=split,
                               batch_size=config.get("eval_batch_size", config.batch_size))
