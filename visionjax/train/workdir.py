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

import contextlib
import dataclasses
import json
import os
import socket
import time
from typing import Iterator

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
    if (root / "checkpoints").exists() and not (root / "checkpoints").is_dir():
      raise ValueError(f"{root / 'checkpoints'} is a file; the run keeps its checkpoints in a "
                       "folder of that name: move the file away")
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
  def lock_file(self) -> epath.Path:
    return self.path / ".lock"

  @contextlib.contextmanager
  def lock(self, lease_seconds: float = 300.0) -> Iterator["Lease"]:
    """One writer per workdir.

    Writes ``.lock`` (pid, host, start time, heartbeat) and removes it on
    exit. A second process is refused at once with the holder's details.
    A lock left by a crashed process does not block: on the same host its
    pid no longer exists; on another host its heartbeat (refreshed by
    `Lease.renew`, e.g. at every log step) is older than ``lease_seconds``.
    """
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    held = self._read_lock()
    if held is not None and _alive(held, lease_seconds):
      since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(held.get("since", 0)))
      raise ValueError(f"workdir {self} is in use by process {held.get('pid')} on host "
                       f"{held.get('host')} since {since} (lock file {self.lock_file}); "
                       "wait for it, stop it, or use another --workdir")
    lease = Lease(self.lock_file, me)
    lease.renew()
    try:
      yield lease
    finally:
      current = self._read_lock()
      if current is not None and current.get("pid") == me["pid"] and \
          current.get("host") == me["host"]:
        self.lock_file.unlink(missing_ok=True)

  def _read_lock(self) -> dict | None:
    try:
      return json.loads(self.lock_file.read_text())
    except FileNotFoundError:
      return None
    except (ValueError, OSError):  # torn or unreadable: treat as not held
      return None

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


@dataclasses.dataclass
class Lease:
  """This process's hold on a workdir's lock; `renew` refreshes the heartbeat."""
  path: epath.Path
  holder: dict

  def renew(self) -> None:
    self.path.write_text(json.dumps({**self.holder, "heartbeat": time.time()}))


def _alive(held: dict, lease_seconds: float) -> bool:
  """Whether the process that wrote ``held`` still holds the lock."""
  if held.get("host") == socket.gethostname():
    pid = held.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
      return False
    try:
      os.kill(pid, 0)
    except ProcessLookupError:
      return False
    except PermissionError:  # exists, owned by someone else
      return True
    return True
  return time.time() - float(held.get("heartbeat", 0)) < lease_seconds
