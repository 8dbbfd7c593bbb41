"""``visionjax predict``: run a trained run's model on your own images.

    visionjax predict --workdir=runs/unet_scenes --images='photos/*.jpg' \\
        --out=preds/ [--checkpoint=latest|best|STEP] [--max_batch=8]

Writes, per image, ``<out>/<name>.json`` (the `visionjax.train.inference`
result: boxes in pixels of the original image, segmentation masks at its
size; detections down to the run's score_threshold, with their scores) and
``<out>/<name>.png``, the prediction drawn over the image (detections scoring
at least ``--min_score``; segmentation colours every class but background).
``--images`` is a glob or a comma-separated list of globs/files; local or
gs:// alike.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import sys
from typing import Sequence

from absl import flags

from visionjax.cli import _app

_WORKDIR = flags.DEFINE_string("workdir", None, "The run's folder (local or gs://).")
_IMAGES = flags.DEFINE_string("images", None,
                              "Image files: a glob or a comma-separated list of globs/files.")
_OUT = flags.DEFINE_string("out", None, "Folder for the JSON results and PNG overlays.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest", "'latest', 'best' or a step number.")
_MAX_BATCH = flags.DEFINE_integer("max_batch", 8, "Images run at once (batch buckets up to it).")
_MIN_SCORE = flags.DEFINE_float(
    "min_score", None, "Detection: the lowest score drawn on the overlays (default: the task's "
    "draw_min_score, 0.5). The JSON keeps every detection, with its score.")
flags.mark_flags_as_required(["workdir", "images", "out"])


def expand(pattern_list: str) -> list[str]:
  """Files named by comma-separated globs (``tf.io.gfile``: local and gs://), in order."""
  import tensorflow as tf
  files = []
  for pattern in (p.strip() for p in pattern_list.split(",")):
    if not pattern:
      continue
    matched = sorted(tf.io.gfile.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
    if not matched:
      raise ValueError(f"--images pattern {pattern!r} matches no file")
    files.extend(matched)
  return files


def write_predictions(predictor, files: Sequence[str], out) -> None:
  """``<out>/<stem>.json`` and ``<out>/<stem>.png`` (overlay) per file."""
  from PIL import Image

  from visionjax.train import inference
  out.mkdir(parents=True, exist_ok=True)
  chunk = predictor.buckets[-1]
  stems: dict[str, int] = {}
  for start in range(0, len(files), chunk):
    names = files[start:start + chunk]
    images = [inference.read_image(f) for f in names]  # read once: predicted and drawn
    for name, image, result in zip(names, images, predictor(images)):
      stem = os.path.splitext(os.path.basename(name))[0]
      stems[stem] = stems.get(stem, 0) + 1
      if stems[stem] > 1:  # same file name in two folders: keep both
        stem = f"{stem}_{stems[stem]}"
      record = {"image": name, "step": predictor.step, **inference.to_json(result)}
      (out / f"{stem}.json").write_text(json.dumps(record))
      buf = io.BytesIO()
      drawn = predictor.exp.task.draw_result(image, result, predictor.class_names)
      Image.fromarray(drawn).save(buf, format="PNG")
      (out / f"{stem}.png").write_bytes(buf.getvalue())
      print(f"{name} -> {os.fspath(out / stem)}.{{json,png}}")


def main(argv: list[str]) -> None:
  del argv
  from visionjax import paths
  from visionjax.train import inference
  try:
    files = expand(_IMAGES.value)
    predictor = inference.Predictor.from_workdir(_WORKDIR.value, checkpoint=_CHECKPOINT.value,
                                                 max_batch=_MAX_BATCH.value)
    if _MIN_SCORE.value is not None:
      if not hasattr(predictor.exp.task, "draw_min_score"):
        raise ValueError(f"--min_score applies to detection runs; this run's task is "
                         f"{predictor.exp.task.name!r}")
      if not 0.0 <= _MIN_SCORE.value <= 1.0:
        raise ValueError(f"--min_score={_MIN_SCORE.value}; expected a score in [0, 1]")
      predictor.exp.task = dataclasses.replace(predictor.exp.task,
                                               draw_min_score=_MIN_SCORE.value)
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f"error: {e}")
  write_predictions(predictor, files, paths.resolve(_OUT.value))


def run(argv: Sequence[str] | None = None) -> None:
  _app.run(main, argv)
