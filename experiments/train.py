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
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax/TFDS info lines drown the progress bar
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")  # tf.data only: keep the accelerators for JAX
  from visionjax.train import loop
  try:
    metrics = loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (ValueError, loop.NonFiniteLossError) as e:
    sys.exit(f"error: {e}")
  print({k: v for k, v in metrics.items() if not isinstance(v, list)})


def _parse_flags(argv):
  """absl flag parsing, with config override mistakes reported in one line."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    msg = " ".join(str(e).replace("\\'", "'").replace("\\n", " ").strip("'\"").split())
    if isinstance(e, AttributeError):  # ml_collections: no such config field
      msg = "unknown config key " + msg.replace("'", "", 2)
    sys.exit(f"error: bad command-line flag: {msg}")


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
