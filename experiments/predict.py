"""Run a trained run's model on your own images.

  python experiments/predict.py --workdir=runs/unet_scenes --images='photos/*.jpg' \
      --out=preds/ [--checkpoint=latest|best|STEP] [--max_batch=8]

Writes, per image, ``<out>/<name>.json`` (the `visionjax.train.inference`
result: boxes in pixels of the original image, segmentation masks at its
size) and ``<out>/<name>.png``, the prediction drawn over the image.
``--images`` is a glob or a comma-separated list of globs/files; local or
gs:// alike.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "The run's folder (local or gs://).")
_IMAGES = flags.DEFINE_string("images", None,
                              "Image files: a glob or a comma-separated list of globs/files.")
_OUT = flags.DEFINE_string("out", None, "Folder for the JSON results and PNG overlays.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest", "'latest', 'best' or a step number.")
_MAX_BATCH = flags.DEFINE_integer("max_batch", 8, "Images run at once (batch buckets up to it).")
flags.mark_flags_as_required(["workdir", "images", "out"])


def _expand(pattern_list: str) -> list[str]:
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


def overlay(predictor, image, result):
  """The result drawn over ``image`` (uint8 [H, W, 3]) -> uint8 [H, W, 3]."""
  return predictor.exp.task.draw_result(image, result, predictor.class_names)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  import io
  import json

  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")  # preprocessing only: keep accelerators for JAX
  from PIL import Image

  from visionjax import paths
  from visionjax.train import inference
  try:
    files = _expand(_IMAGES.value)
    predictor = inference.Predictor.from_workdir(_WORKDIR.value, checkpoint=_CHECKPOINT.value,
                                                 max_batch=_MAX_BATCH.value)
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f"error: {e}")
  out = paths.resolve(_OUT.value)
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
      Image.fromarray(overlay(predictor, image, result)).save(buf, format="PNG")
      (out / f"{stem}.png").write_bytes(buf.getvalue())
      print(f"{name} -> {os.fspath(out / stem)}.{{json,png}}")


if __name__ == "__main__":
  app.run(main)
