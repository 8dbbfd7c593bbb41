"""Paths on any filesystem: local folders and storage URLs alike.

Every file visionjax reads or writes goes through `etils.epath`, so a path can
be local or a URL (``gs://bucket/x``: TensorFlow's GCS filesystem, which
epath, TensorBoard and TFDS use; Orbax writes arrays through TensorStore's).
Local paths are made absolute (``~`` expanded); URLs are kept as they are:
``os.path.abspath('gs://b/x')`` would give ``<cwd>/gs:/b/x``, a local folder
that a preemptible VM loses. With TensorFlow installed, epath reads every URL
scheme through ``tf.io.gfile``, which has ``gs://`` but no ``s3://`` or
``az://`` in current TensorFlow releases.
"""
from __future__ import annotations

import os

from etils import epath


def is_local(path: str | os.PathLike) -> bool:
  """Whether ``path`` is a local path (no ``scheme://``)."""
  return "://" not in os.fspath(path)


def resolve(path: str | os.PathLike) -> epath.Path:
  """``path`` as an `epath.Path`: URLs unchanged, local paths absolute."""
  s = os.fspath(path)
  if not is_local(s):
    return epath.Path(s)
  return epath.Path(os.path.abspath(os.path.expanduser(s)))
