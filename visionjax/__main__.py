"""``python -m visionjax <command>``: the same as the ``visionjax`` command."""
from visionjax.cli import main

if __name__ == "__main__":
  main()
