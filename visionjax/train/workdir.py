"""The run folder: where each file of a run lives, on any filesystem.

A workdir is a local folder or a storage URL (``gs://bucket/runs/x``); see
`visionjax.paths` for how paths are resolved.

Layout (`Workdir` properties):

  config.json          the resolved config
  metrics.jsonl        one JSON object per log/eval event
  tensorboard/         TensorBoard event files
  checkpoints/<step>/  Orbax checkpoints
  final_metrics.json   the final evaluation
  learning_curves.png, predictions.png, detections/   pictures
  eval/<checkpoint>/   results of `visionjax.train.evaluate` runs
"""
from __future__ import annotations

import dataclasses
import os

from etils import epath

from visionjax.paths import resolve


@dataclasses.dataclass(frozen=True)
class Workdir:
  """A run folder (see the module docstring for its layout)."""
  path: epath.Path

  @classmethod
  def create(cls, path: str | os.PathLike) -> "Workdir":
    """Creates the folder and checks a file can be written there."""
    root = resolve(path)
    probe = root / f".write_probe_{os.getpid()}"
    try:
      root.mkdir(parents=True, exist_ok=True)
      probe.write_text("ok")
      probe.unlink()
    except Exception as e:  # noqa: BLE001  (OSError locally, gfile errors remotely)
      reason = getattr(e, "strerror", None) or getattr(e, "message", None) or e
      raise ValueError(f"workdir {os.fspath(root)!r} is not writable: {reason}") from None
    return cls(root)

  @classmethod
  def existing(cls, path: str | os.PathLike) -> "Workdir":
    """An existing run folder (one with a ``config.json``)."""
    root = resolve(path)
    if not (root / "config.json").exists():
      raise ValueError(f"{os.fspath(root)!r} is not a visionjax workdir: it has no "
                       "config.json (train into it first)")
    return cls(root)

  @property
  def config_json(self) -> epath.Path:
    return self.path / "config.json"

  @property
  def metrics_jsonl(self) -> epath.Path:
    return self.path / "metrics.jsonl"

  @property
  def tensorboard(self) -> epath.Path:
    return self.path / "tensorboard"

  @property
  def checkpoints(self) -> epath.Path:
    return self.path / "checkpoints"

  @property
  def final_metrics(self) -> epath.Path:
    return self.path / "final_metrics.json"

  def file(self, name: str) -> epath.Path:
    """Any other file of the run (pictures)."""
    return self.path / name

  def __fspath__(self) -> str:
    return os.fspath(self.path)

  def __str__(self) -> str:
    return os.fspath(self.path)
