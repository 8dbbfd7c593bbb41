"""`visionjax predict` run from a source checkout (flags and docs: visionjax/cli/predict.py).

  python experiments/predict.py --workdir=runs/unet --images='photos/*.jpg' --out=preds/
"""
import sys

from visionjax.cli import main

if __name__ == "__main__":
  main([sys.argv[0], "predict", *sys.argv[1:]])
