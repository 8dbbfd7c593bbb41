"""Checks of a prepared TFDS dataset's files, and read errors that name them.

TFDS reports a damaged dataset in its own terms: a corrupt or truncated
record file is a ``DataLossError`` ("corrupted record at 48272") naming no
file, a missing ``dataset_info.json`` leaves a builder with no splits ("its
splits are []"), an unreadable one is a ``ParseError`` naming no file. Here
each becomes a `DatasetFilesError` (a ValueError) naming the file and how to
re-prepare the dataset.

* `check_files`: before reading (cheap: one JSON parse and a ``stat`` per
  record file): ``dataset_info.json`` present and valid, every record file of
  every split present and, for TFRecord files, not shorter than what was
  written (each record is its example's bytes plus 16 bytes of framing, and
  ``dataset_info.json`` keeps the examples' total).
* `read_error`: after a read failed: finds the file whose records do not
  check out (TFRecord CRCs, read without decoding) and names it.
* `info_error`: a builder that could not even be constructed.
"""
from __future__ import annotations

import json
import os
import re
from typing import Iterable, Sequence

from etils import epath
import tensorflow as tf
import tensorflow_datasets as tfds

_RECORD_OVERHEAD = 16  # bytes per TFRecord: length (8) + its CRC (4) + data CRC (4)


class DatasetFilesError(ValueError):
  """A prepared dataset's file is missing, truncated or damaged."""


def reprepare_hint(folder: os.PathLike | str, name: str) -> str:
  """What to do about a damaged prepared dataset in ``folder``."""
  return (f"re-prepare the dataset: delete {os.fspath(folder)} and run the same command "
          f"again (it prepares {name!r} anew from its sources)")


def _name(builder: tfds.core.DatasetBuilder) -> str:
  config = builder.builder_config
  return f"{builder.name}/{config.name}" if config is not None else builder.name


def check_files(builder: tfds.core.DatasetBuilder) -> None:
  """Raises `DatasetFilesError` naming the first missing, unreadable or
  truncated file of ``builder``'s prepared dataset."""
  root = epath.Path(builder.data_dir)
  name = _name(builder)
  info = root / "dataset_info.json"
  if not info.exists():
    raise DatasetFilesError(f"{info} is missing: the prepared dataset {name!r} is incomplete; "
                            + reprepare_hint(root, name))
  try:
    json.loads(info.read_text())
  except ValueError as e:
    raise DatasetFilesError(f"{info} is not valid JSON ({e}); "
                            + reprepare_hint(root, name)) from None
  tfrecord = builder.info.file_format == tfds.core.FileFormat.TFRECORD
  for split, split_info in builder.info.splits.items():
    files = list(split_info.filepaths)
    missing = [f for f in files if not f.exists()]
    if missing:
      raise DatasetFilesError(
          f"{missing[0]} is missing ({len(missing)} of the {len(files)} record files of split "
          f"{split!r} of {name!r}); " + reprepare_hint(root, name))
    if tfrecord and split_info.num_bytes:
      size = sum(f.stat().length for f in files)
      written = int(split_info.num_bytes) + _RECORD_OVERHEAD * split_info.num_examples
      if size < written:
        short = (files[0] if len(files) == 1 else
                 (damaged_file(files) or (None, ""))[0] or f"one of {root}/*{split}*")
        raise DatasetFilesError(
            f"{short} is truncated (split {split!r} of {name!r} has {size} bytes of the "
            f"{written} written when it was prepared); " + reprepare_hint(root, name))


def damaged_file(files: Iterable[os.PathLike | str]) -> tuple[str, str] | None:
  """``(path, reason)`` of the first file whose TFRecords do not read back
  (missing, truncated, CRC mismatch), or None. Reads every record once,
  without decoding."""
  for f in files:
    try:
      for _ in tf.data.TFRecordDataset(os.fspath(f)):
        pass
    except tf.errors.OpError as e:
      return os.fspath(f), f"{type(e).__name__}: {_reason(e)}"
  return None


def _reason(e: Exception) -> str:
  """The first line of ``e``'s message without TensorFlow's op decorations."""
  text = (str(getattr(e, "message", None) or e).strip().splitlines() or [""])[0]
  text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", text)
  return re.sub(r"\s*\[Op:[^\]]*\].*$", "", text)


def read_error(builders: Sequence[tfds.core.DatasetBuilder], split: str, error: Exception
               ) -> DatasetFilesError:
  """The error to raise when reading ``split`` of ``builders`` (one, or the
  parts of an ``a+b`` dataset) failed with ``error``: the damaged file named
  when one is found, else ``error`` and the split."""
  base = split.split("[")[0].split("+")[0].strip()
  for builder in builders:
    splits = builder.info.splits
    if builder.info.file_format == tfds.core.FileFormat.TFRECORD and base in splits:
      found = damaged_file(splits[base].filepaths)
      if found is not None:
        return DatasetFilesError(f"{found[0]} is damaged ({found[1]}); "
                                 + reprepare_hint(builder.data_dir, _name(builder)))
  first = builders[0]
  return DatasetFilesError(f"reading split {split!r} of {_name(first)!r} in {first.data_dir} "
                           f"failed ({type(error).__name__}: {_reason(error)}); "
                           + reprepare_hint(first.data_dir, _name(first)))


def info_error(data_dir: str | None, names: Iterable[str], error: Exception) -> Exception:
  """``error`` (from constructing the builders of ``names``) as a
  `DatasetFilesError` naming the ``dataset_info.json`` that does not parse,
  if there is one; else ``error`` itself."""
  root = epath.Path(data_dir or tfds.core.constants.DATA_DIR)
  for name in names:
    for info in sorted(root.glob(f"{name.split(':')[0]}/*/dataset_info.json")):
      try:
        json.loads(info.read_text())
      except ValueError as e:
        return DatasetFilesError(f"{info} is not valid JSON ({e}); "
                                 + reprepare_hint(info.parent, name))
  return error
