"""`visionjax train` run from a source checkout (flags and docs: visionjax/cli/train.py).

  python experiments/train.py --config=experiments/configs/unet_scenes.py --workdir=runs/unet
"""
import sys

from visionjax.cli import main

if __name__ == "__main__":
  main([sys.argv[0], "train", *sys.argv[1:]])
