"""Run a trained run's model on your own images.

  python experiments/predict.py --workdir=runs/unet_scenes --images='photos/*.jpg' \
      --out=preds/ [--checkpoint=latest|best|STEP] [--max_batch=8]

Writes, per image, ``<out>/<name>.json`` (the `visionjax.train.inference`
result: boxes in pixels of the original image, segmentation masks at its
size) and ``<out>/<name>.png``, the prediction drawn over the image.
``--images`` is a glob or a comma-separated list of globs/files; local or
gs:// alike.
"""
import sys

from visionjax.cli import main

if __name__ == "__main__":
  main([sys.argv[0], "predict", *sys.argv[1:]])
