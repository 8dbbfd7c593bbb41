"""Evaluate a trained run's checkpoint without training.

  python experiments/evaluate.py --workdir=runs/unet_scenes [--checkpoint=best|latest|STEP]
      [--split=test]

Reads the run's config.json, restores the parameters (no optimizer state) and
writes metrics and pictures under <workdir>/eval/<step>/. Works on gs:// too.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "The run's folder (local or gs://).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest", "'latest', 'best' or a step number.")
_SPLIT = flags.DEFINE_string("split", None, "Split to evaluate (default: the run's eval_split).")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")  # tf.data only: keep the accelerators for JAX
  from visionjax.train import evaluation
  try:
    metrics = evaluation.evaluate_workdir(_WORKDIR.value, checkpoint=_CHECKPOINT.value,
                                        split=_SPLIT.value, progress=True)
  except ValueError as e:
    sys.exit(f"error: {e}")
  print({k: v for k, v in metrics.items() if not isinstance(v, list)})


if __name__ == "__main__":
  app.run(main)
