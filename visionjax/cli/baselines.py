"""``visionjax baselines``: classical segmentation baselines next to a U-Net.

    visionjax baselines [--dataset=digit_scenes/dense64] [--split=test] [--count=N]
                        [--unet_workdir=runs/unet] [--methods=otsu,kmeans]

Scores each `visionjax.classical` method as a foreground/background
segmenter of the built-in scenes' held-out split (and a trained segmentation
run, foreground = any digit, when ``--unet_workdir`` is given) with the
package's segmentation metrics, and prints a Markdown table
(`visionjax.train.baselines`).
"""
from __future__ import annotations

import sys
from typing import Sequence

from absl import flags

from visionjax.cli import _app

_DATASET = flags.DEFINE_string("dataset", "digit_scenes/dense64", "Dataset with masks.")
_SPLIT = flags.DEFINE_string("split", "test", "Split to score.")
_COUNT = flags.DEFINE_integer("count", None, "Score only the first N images (default: all).")
_METHODS = flags.DEFINE_list("methods", None, "Methods to score (default: all).")
_UNET = flags.DEFINE_string("unet_workdir", None, "A trained segmentation run to add as a row.")
_CHECKPOINT = flags.DEFINE_string("unet_checkpoint", "best", "'best', 'latest' or a step.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data_dir (default: TFDS's).")


def main(argv: list[str]) -> None:
  del argv
  from visionjax.train import baselines
  try:
    rows = baselines.score_baselines(_DATASET.value, _SPLIT.value, count=_COUNT.value,
                                     methods=_METHODS.value, unet_workdir=_UNET.value,
                                     unet_checkpoint=_CHECKPOINT.value,
                                     data_dir=_DATA_DIR.value)
  except ValueError as e:
    sys.exit(f"error: {e}")
  print(baselines.format_table(rows))


def run(argv: Sequence[str] | None = None) -> None:
  _app.run(main, argv)
