"""`visionjax export` run from a source checkout (flags and docs: visionjax/cli/export.py).

  python experiments/export.py --workdir=runs/unet --format=saved_model --out=exported/
"""
import sys

from visionjax.cli import main

if __name__ == "__main__":
  main([sys.argv[0], "export", *sys.argv[1:]])
