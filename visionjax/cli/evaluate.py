"""``visionjax evaluate``: evaluate a run's checkpoint without training.

    visionjax evaluate --workdir=runs/unet_scenes [--checkpoint=best|latest|STEP] [--split=test]

Reads the run's config.json, restores the parameters (no optimizer state) and
writes metrics and pictures under <workdir>/eval/<step>/. Works on gs:// too.
"""
from __future__ import annotations

import sys
from typing import Sequence

from absl import flags

from visionjax.cli import _app

_WORKDIR = flags.DEFINE_string("workdir", None, "The run's folder (local or gs://).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest", "'latest', 'best' or a step number.")
_SPLIT = flags.DEFINE_string("split", None, "Split to evaluate (default: the run's eval_split).")
flags.mark_flags_as_required(["workdir"])


def main(argv: list[str]) -> None:
  del argv
  from visionjax.train import evaluation
  try:
    metrics = evaluation.evaluate_workdir(_WORKDIR.value, checkpoint=_CHECKPOINT.value,
                                          split=_SPLIT.value, progress=True)
  except ValueError as e:
    sys.exit(f"error: {e}")
  print({k: v for k, v in metrics.items() if not isinstance(v, list)})


def run(argv: Sequence[str] | None = None) -> None:
  _app.run(main, argv)
