"""Train and evaluate a visionjax model from an ml_collections config.

  python experiments/train.py --config=experiments/configs/unet_scenes.py \
      --workdir=/tmp/unet --config.num_train_steps=2000

Re-running on the same workdir resumes from its newest checkpoint.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, logs and plots go.")
_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Join a multi-host run (jax.distributed.initialize) before "
    "anything else. The cluster is detected on Cloud TPU, SLURM, Open MPI and GKE; "
    "elsewhere also give the three flags below, the same command on every host.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 (with --multihost).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0-based.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax/TFDS info lines drown the progress bar
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")  # tf.data only: keep the accelerators for JAX
  from visionjax.train import loop, parallel
  try:
    if _MULTIHOST.value:
      parallel.initialize_multihost(_COORDINATOR.value, _NUM_PROCESSES.value,
                                    _PROCESS_ID.value)
    metrics = loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (ValueError, loop.NonFiniteLossError) as e:
    sys.exit(f"error: {e}")
  print({k: v for k, v in metrics.items() if not isinstance(v, list)})


def _parse_flags(argv):
  """absl flag parsing, with config override mistakes reported in one line."""
  from visionjax.train import config as config_lib
  for arg in argv[1:]:
    if arg.startswith("--config="):
      try:
        config_lib.check_config_file(arg.split("=", 1)[1])
      except ValueError as e:
        sys.exit(f"error: {e}")
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    msg = " ".join(str(e).replace("\\'", "'").replace("\\n", " ").strip("'\"").split())
    if isinstance(e, AttributeError):  # ml_collections: no such config field
      msg = "unknown config key " + msg.replace("'", "", 2)
    sys.exit(f"error: bad command-line flag: {msg}")


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
