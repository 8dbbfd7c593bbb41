"""The experiment configs shipped with visionjax (one ``get_config()`` per file).

``visionjax train --config=unet_scenes`` finds ``unet_scenes.py`` here;
``--config=path/to/my_config.py`` takes any file instead. In a source
checkout ``experiments/configs`` points at this folder.
"""
from __future__ import annotations

import importlib.resources
import os


def names() -> list[str]:
  """The shipped config names (file names without ``.py``), sorted."""
  here = importlib.resources.files(__name__)
  return sorted(p.name[:-3] for p in here.iterdir()
                if p.name.endswith(".py") and not p.name.startswith("_"))


def resolve(value: str) -> str:
  """A ``--config`` value -> a config file path, keeping any ``:args``.

  A path to a file (or anything with a path separator or a ``.py`` suffix)
  is returned as given; a bare name is a shipped config
  (``'unet_scenes'`` -> ``<package>/configs/unet_scenes.py``).
  """
  file, sep, args = value.partition(":")
  if os.path.exists(file) or file.endswith(".py") or "/" in file or os.sep in file:
    return value
  if file not in names():
    raise ValueError(f"config {file!r} is neither a file nor a config shipped with visionjax; "
                     f"shipped: {names()}")
  return os.fspath(importlib.resources.files(__name__) / f"{file}.py") + sep + args
