"""Where a dataset's files come from, and preparing a TFDS builder from them.

`prepare_builder` builds a dataset once. Archives found in the manual
download folder (``config.dataset.manual_dir``, default
``<data_dir>/downloads/manual``) are used instead of downloading; a dataset
that can only be downloaded by hand (Cityscapes), or whose download failed,
raises `MissingDatasetFilesError` naming each file, its source and the folder
to put it in. `can_prepare_builder` says beforehand whether that would
happen, without the download's own retries (minutes on a machine without
network).
"""
from __future__ import annotations

import dataclasses
import os
import socket
import urllib.parse

import ml_collections
import tensorflow_datasets as tfds

from visionjax import paths


@dataclasses.dataclass(frozen=True)
class SourceFile:
  """An archive a builder reads: its file name and where to get it."""
  name: str
  url: str


class MissingDatasetFilesError(FileNotFoundError):
  """Archives a dataset needs are not in its manual download folder."""


def manual_dir(dc: ml_collections.ConfigDict, builder: tfds.core.DatasetBuilder) -> str:
  """The folder archives are picked up from (TFDS's default unless set);
  local or a storage URL."""
  if dc.get("manual_dir"):
    return os.fspath(paths.resolve(dc.manual_dir))
  # TFDS's own default (DownloadManager: <data_dir root>/downloads/manual);
  # the root is not public API, but naming the folder in errors needs it.
  return os.fspath(paths.resolve(builder._data_dir_root) / "downloads" / "manual")


def prepare_kwargs(dc: ml_collections.ConfigDict, builder: tfds.core.DatasetBuilder) -> dict:
  """Arguments for `download_and_prepare`.

  Manual folder as configured; no attempt to fetch a prepared copy from
  Google Cloud Storage (offline machines would wait on it, and the result
  must come from the archives the user has).
  """
  return {"download_config": tfds.download.DownloadConfig(
      manual_dir=manual_dir(dc, builder), try_download_gcs=False)}


def missing_files_message(name: str, folder: str, files: tuple[SourceFile, ...]) -> str:
  lines = [f"dataset {name!r} needs these files in {folder} (set "
           "config.dataset.manual_dir to use another folder); put them there "
           "as downloaded, without unpacking:"]
  for f in files:
    state = "present" if (paths.resolve(folder) / f.name).exists() else "MISSING"
    lines.append(f"  {f.name}  [{state}]  from {f.url}")
  return "\n".join(lines)


def missing_files(dc: ml_collections.ConfigDict, builder: tfds.core.DatasetBuilder,
                  files: tuple[SourceFile, ...]) -> list[SourceFile]:
  """Those of ``files`` that are not in the manual download folder."""
  folder = paths.resolve(manual_dir(dc, builder))
  return [f for f in files if not (folder / f.name).exists()]


def reachable(url: str, timeout: float = 5.0) -> bool:
  """Whether ``url``'s host accepts a TCP connection within ``timeout`` seconds
  (name lookup included): a quick "is there network to download from"."""
  parts = urllib.parse.urlsplit(url)
  port = parts.port or {"http": 80, "https": 443, "ftp": 21}.get(parts.scheme)
  if not parts.hostname or port is None:
    return False
  try:
    with socket.create_connection((parts.hostname, port), timeout=timeout):
      return True
  except OSError:  # no route, refused, timed out, name not resolved
    return False


def can_prepare_builder(dc: ml_collections.ConfigDict, builder: tfds.core.DatasetBuilder,
                        files: tuple[SourceFile, ...], manual_only: bool, *,
                        timeout: float = 5.0) -> bool:
  """Whether `prepare_builder` can get every file it needs: the builder is
  prepared, or each missing archive's host answers within ``timeout`` seconds
  (never for ``manual_only`` datasets). Downloads nothing; a True does not
  promise the download then succeeds."""
  if builder.is_prepared():
    return True
  missing = missing_files(dc, builder, files)
  if manual_only:
    return not missing
  return all(reachable(f.url, timeout) for f in missing)


def prepare_builder(dc: ml_collections.ConfigDict, builder: tfds.core.DatasetBuilder,
                    files: tuple[SourceFile, ...], manual_only: bool) -> None:
  """Runs ``builder.download_and_prepare`` unless it is prepared already.

  ``files`` are the archives it reads; ``manual_only`` datasets (no
  download possible) fail before trying when one is missing.
  """
  if builder.is_prepared():
    return
  folder = manual_dir(dc, builder)
  missing = missing_files(dc, builder, files)
  if manual_only and missing:
    raise MissingDatasetFilesError(missing_files_message(dc.name, folder, files))
  try:
    builder.download_and_prepare(**prepare_kwargs(dc, builder))
  except Exception as e:  # noqa: BLE001  (re-raised with instructions)
    if not missing:
      raise
    raise MissingDatasetFilesError(
        f"preparing {dc.name!r} failed ({type(e).__name__}: {e}); if the "
        "download failed (no network?), download the files by hand.\n"
        + missing_files_message(dc.name, folder, files)) from e
