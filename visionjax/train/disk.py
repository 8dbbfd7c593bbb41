"""A full disk as one line: what failed to write, where, and how to go on.

A write that fails with ENOSPC (no space left), EFBIG (file too large, e.g.
a file size limit) or EDQUOT (quota) reaches the loop in several shapes: an
`OSError` from Python's own writes (metrics.jsonl, pictures, config.json),
TensorStore's ``ValueError: ... Failed writing: "<file>": ... [os_error_code='28']``
from an Orbax save (raised again by each later Orbax call), TensorFlow's
errors from the TensorBoard writer. `disk_full_error` recognizes each (the
exception or anything it was raised from) and returns a `DiskFullError`
naming the operation and the file; `quiet_orbax_disk_errors` keeps Orbax's
background threads from logging the same failure as several long
tracebacks first.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import sys
from typing import Iterator

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
_TEXT = {os.strerror(n): n for n in DISK_FULL_ERRNOS}
_OS_CODE = re.compile(r"os_error_code='?(\d+)")
_QUOTED_PATH = re.compile(r'"(/[^"]+|[a-z]+://[^"]+)"')


class DiskFullError(ValueError):
  """A write failed because the disk (or a size limit or quota) is full."""


def _errno(e: BaseException) -> int | None:
  """The disk-full errno of ``e`` itself, if it is one."""
  if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
    return e.errno
  text = str(e)
  m = _OS_CODE.search(text)
  if m and int(m.group(1)) in DISK_FULL_ERRNOS:
    return int(m.group(1))
  for words, n in _TEXT.items():
    if words in text:
      return n
  return None


def _chain(e: BaseException) -> Iterator[BaseException]:
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    yield e
    e = e.__cause__ or e.__context__


def is_disk_full(e: BaseException) -> bool:
  """Whether ``e``, or an exception it was raised from, is a full disk."""
  return any(_errno(x) is not None for x in _chain(e))


def _what(path: str, workdir: str) -> str:
  rel = os.path.relpath(path, workdir) if path.startswith(workdir) else path
  parts = rel.split(os.sep)
  if parts[0] == "checkpoints" and len(parts) > 1:
    return f"saving checkpoint {parts[1].split('.')[0]}"
  if parts[0] == "tensorboard":
    return "writing TensorBoard events"
  return f"writing {rel}"


def disk_full_error(e: BaseException, workdir: os.PathLike | str) -> DiskFullError | None:
  """``e`` as a one-line `DiskFullError` (what failed, where, what to do), or
  None when it is not a full disk."""
  workdir = os.fspath(workdir)
  for x in _chain(e):
    n = _errno(x)
    if n is None:
      continue
    path = getattr(x, "filename", None) if isinstance(x, OSError) else None
    if path is None:
      quoted = [p for p in _QUOTED_PATH.findall(str(x)) if not p.endswith("/")]
      path = quoted[-1] if quoted else None
    if path is None:
      what, where = "a write", f"in {workdir}"
    else:
      path = os.fspath(path)
      what = _what(path, workdir)
      where = (f"{workdir}/checkpoints" if what.startswith("saving checkpoint") else path)
    return DiskFullError(f"{what} failed: {os.strerror(n)} ({where}); free space and rerun the "
                         "same command to resume")
  return None


class _DropDiskFull(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    if "orbax" not in record.pathname:
      return True
    exc = record.exc_info[1] if record.exc_info else None
    return not ((exc is not None and is_disk_full(exc)) or
                _errno(Exception(record.getMessage())) is not None)


class _DropOrphanedDiskFull(logging.Filter):
  """asyncio's "Task exception was never retrieved" for an Orbax write task
  that failed on the full disk after the save had already failed: logged
  with a traceback when the task is garbage-collected, which can be after
  `quiet_orbax_disk_errors` has exited (seen at load ~8: the second fragment
  of the same save failing). Stays installed: it only drops disk-full ones."""

  def filter(self, record: logging.LogRecord) -> bool:
    if not record.getMessage().startswith("Task exception was never retrieved"):
      return True
    exc = record.exc_info[1] if record.exc_info else None
    return not ((exc is not None and is_disk_full(exc)) or
                _errno(Exception(record.getMessage())) is not None)


def _late_callback(unraisable) -> bool:
  """TensorStore completing a write future after Orbax closed the event loop
  of a failed save: ``call_soon_threadsafe`` raises 'Event loop is closed'
  where nothing can catch it."""
  return (isinstance(unraisable.exc_value, RuntimeError)
          and str(unraisable.exc_value) == "Event loop is closed")


@contextlib.contextmanager
def quiet_orbax_disk_errors() -> Iterator[None]:
  """While active, Orbax's log records of a full disk (its background save
  threads log each failure with a traceback) are dropped, and so are the
  'Event loop is closed' errors TensorStore's late callbacks of that failed
  save raise (reported by Python as unraisable, with a traceback each): the
  run reports the failure once, as a `DiskFullError`. Everything else passes.
  """
  orphans = logging.getLogger("asyncio")
  if not any(isinstance(x, _DropOrphanedDiskFull) for x in orphans.filters):
    orphans.addFilter(_DropOrphanedDiskFull())
  logger = logging.getLogger("absl")
  f = _DropDiskFull()
  logger.addFilter(f)
  previous = sys.unraisablehook

  def hook(unraisable):
    if not _late_callback(unraisable):
      previous(unraisable)

  sys.unraisablehook = hook
  try:
    yield
  finally:
    logger.removeFilter(f)
    if sys.unraisablehook is hook:
      sys.unraisablehook = previous


@contextlib.contextmanager
def names_file(path: os.PathLike | str) -> Iterator[None]:
  """Re-raises an `OSError` without a file name (a failed ``write`` names
  none, unlike ``open``) as the same error naming ``path``."""
  try:
    yield
  except OSError as e:
    if e.filename is not None or e.errno is None:
      raise
    raise OSError(e.errno, e.strerror or os.strerror(e.errno), os.fspath(path)) from e
