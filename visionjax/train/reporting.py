"""Where training numbers go: metrics.jsonl, TensorBoard and the console."""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from typing import Any

from etils import epath
import numpy as np

from visionjax import paths
from visionjax.train import disk


def jsonable(v: Any) -> Any:
  if isinstance(v, (np.ndarray, np.generic)):
    v = v.tolist()
  if isinstance(v, float) and not math.isfinite(v):
    return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
  if isinstance(v, (list, tuple)):
    return [jsonable(x) for x in v]
  return v


class MetricWriter:
  """Appends one JSON object per line to ``<workdir>/metrics.jsonl`` and
  writes the scalars as TensorBoard events under ``<workdir>/tensorboard``.

  Only the main process writes (``enabled=False`` elsewhere). Every record has
  ``step``, ``split`` ('train' | 'eval') and ``time`` (seconds since epoch).
  Local files are appended and flushed per line, so nothing is lost on a
  crash. Object stores (``gs://``) cannot append: there the whole file is
  rewritten at each write (it is small: one line per log step).

  TensorBoard events on a storage URL are written by ``tf.summary`` into a
  local temporary folder and copied through epath after each write, like
  every other file of the run: ``tf.summary`` writes through TensorFlow's
  own C++ filesystems, which have no ``s3://`` and cannot be pointed at a
  GCS endpoint other than Google's, while epath goes wherever its backend
  (``tf.io.gfile``, or fsspec with ``EPATH_USE_TF=false``) does.
  """

  def __init__(self, workdir: str | os.PathLike, enabled: bool = True):
    self.enabled = enabled
    self.path = paths.resolve(workdir) / "metrics.jsonl"
    self._append = paths.is_local(self.path)
    self._lines: list[str] | None = None  # object stores: the file's lines so far
    self._tb = None
    self._tb_dir = self.path.parent / "tensorboard"
    self._tb_stage: str | None = None  # storage URLs: tf.summary's local folder
    if enabled and self._append and self.path.exists():
      # A crash may have torn the last line: cut it off, so the next record
      # starts on a line of its own (that event is lost; the run is not).
      with open(os.fspath(self.path), "rb+") as f:  # local (epath has no 'r+')
        data = f.read()
        if data and not data.endswith(b"\n"):
          f.truncate(data.rfind(b"\n") + 1)
    if enabled:
      import tensorflow as tf  # the tf.summary writer is TensorBoard's own
      if self._append:
        target = os.fspath(self._tb_dir)
      else:  # outside the working directory: a URL never becomes a local folder
        self._tb_stage = target = tempfile.mkdtemp(prefix="visionjax_tensorboard_")
      self._tb = tf.summary.create_file_writer(target)

  def write(self, step: int, split: str, metrics: dict[str, Any]) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), "split": split, "time": time.time(),
              **{k: jsonable(v) for k, v in metrics.items()}}
    line = json.dumps(record) + "\n"
    if self._append:
      with disk.names_file(self.path), self.path.open("a") as f:
        f.write(line)
    else:
      if self._lines is None:
        self._lines = self.path.read_text().splitlines(True) if self.path.exists() else []
      self._lines.append(line)
      self.path.write_text("".join(self._lines))
    import tensorflow as tf
    with self._tb.as_default(step=int(step)):
      for k, v in metrics.items():
        if isinstance(v, (int, float, np.number)) and math.isfinite(float(v)):
          tf.summary.scalar(f"{split}/{k}", float(v))
    self._tb.flush()
    self._copy_events()

  def _copy_events(self) -> None:
    """Storage URLs: the staged event files, whole, to ``<workdir>/tensorboard``."""
    if self._tb_stage is None:
      return
    self._tb_dir.mkdir(parents=True, exist_ok=True)
    for name in sorted(os.listdir(self._tb_stage)):
      with open(os.path.join(self._tb_stage, name), "rb") as f:
        (self._tb_dir / name).write_bytes(f.read())

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._tb = None
      if self._tb_stage is not None:
        self._copy_events()
        shutil.rmtree(self._tb_stage, ignore_errors=True)
        self._tb_stage = None


def read_metrics(workdir: str | os.PathLike) -> list[dict[str, Any]]:
  """All records of ``<workdir>/metrics.jsonl`` (empty if none).

  A torn last line (a crash mid-write) is skipped; any other unreadable line
  raises a ValueError naming the file and the line.
  """
  path = epath.Path(paths.resolve(workdir)) / "metrics.jsonl"
  if not path.exists():
    return []
  lines = [line for line in path.read_text().splitlines() if line.strip()]
  records = []
  for i, line in enumerate(lines):
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError as e:
      if i == len(lines) - 1:  # torn by a crash: the event is lost, the run is not
        break
      raise ValueError(f"{path}: line {i + 1} is not JSON ({e.msg}); fix or delete it") from None
  return records
