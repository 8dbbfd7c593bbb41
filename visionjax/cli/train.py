"""``visionjax train``: train and evaluate a model from an ml_collections config.

    visionjax train --config=unet_scenes --workdir=runs/unet \\
        --config.num_train_steps=2000

``--config`` is a shipped config's name (`visionjax.configs.names()`) or a
config file. Every field can be overridden (``--config.optimizer.learning_rate=0.1``).
Re-running on the same workdir resumes from its newest checkpoint.
"""
from __future__ import annotations

import sys
from typing import Sequence

from absl import flags
from ml_collections import config_flags

from visionjax import configs
from visionjax.cli import _app

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A shipped config's name (e.g. unet_scenes) or a config file.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, logs and plots go "
                               "(local or gs://).")
_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Join a multi-host run (jax.distributed.initialize) before "
    "anything else. The cluster is detected on Cloud TPU, SLURM, Open MPI and GKE; "
    "elsewhere also give the three flags below, the same command on every host.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 (with --multihost).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0-based.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  del argv
  from visionjax.train import loop, parallel
  try:
    if _MULTIHOST.value:
      parallel.initialize_multihost(_COORDINATOR.value, _NUM_PROCESSES.value,
                                    _PROCESS_ID.value)
    metrics = loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (ValueError, loop.NonFiniteLossError) as e:
    sys.exit(f"error: {e}")
  print({k: v for k, v in metrics.items() if not isinstance(v, list)})


def parse_flags(argv: Sequence[str]) -> list[str]:
  """A config name becomes its shipped file; a config file that is missing,
  does not run or has no ``get_config`` is one line, before absl loads it."""
  from visionjax.train import config as config_lib
  argv = list(argv)
  for i, arg in enumerate(argv[1:], 1):
    if arg.startswith("--config="):
      try:
        argv[i] = "--config=" + configs.resolve(arg.split("=", 1)[1])
        config_lib.check_config_file(argv[i].split("=", 1)[1])
      except ValueError as e:
        sys.exit(f"error: {e}")
  return _app.parse_flags(argv)


def run(argv: Sequence[str] | None = None) -> None:
  _app.run(main, argv, flags_parser=parse_flags)
