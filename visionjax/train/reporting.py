"""Where training numbers go: metrics.jsonl, TensorBoard and the console."""
from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import numpy as np


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
  ``step``, ``split`` ('train' | 'eval') and ``time`` (seconds since epoch);
  the file is flushed per line so nothing is lost on a crash.
  """

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if enabled:
      import tensorflow as tf  # the tf.summary writer is TensorBoard's own
      self._tb = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, split: str, metrics: dict[str, Any]) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), "split": split, "time": time.time(),
              **{k: jsonable(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    import tensorflow as tf
    with self._tb.as_default(step=int(step)):
      for k, v in metrics.items():
        if isinstance(v, (int, float, np.number)) and math.isfinite(float(v)):
          tf.summary.scalar(f"{split}/{k}", float(v))
    self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """All records of ``<workdir>/metrics.jsonl`` (empty if none)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
