"""Orbax checkpointing: periodic + best-by-metric, async, resumable, verified.

Each checkpoint ``<dir>/<step>/`` holds two Orbax items: ``default`` (the
state's arrays) and ``integrity`` (JSON: the run's resolved config and a
checksum per array, `checksums`). Orbax checks only its chunk *indexes*
(crc32c); bytes overwritten inside an array chunk restore silently as other
numbers. So every restore recomputes the checksums and a mismatch is an
unreadable checkpoint (moved aside by `Checkpointer.restore_newest_intact`).
Checkpoints written before this had no ``integrity`` item; they restore
unverified.
"""
from __future__ import annotations

import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from visionjax import paths
from visionjax.train import reporting

# Orbax writes arrays through TensorStore, and its path handling keeps only
# gs:// URLs (`tensorstore_utils._normalize_path` in orbax-checkpoint 0.12:
# os.path.normpath, then 'gs:/' back to 'gs://'), so 's3://b/x' is written to
# a local folder 's3:/b/x'.
CHECKPOINT_SCHEMES = ("gs",)


def check_storage(path: str | os.PathLike) -> None:
  """Raises a one-line ValueError, before anything is written, when Orbax
  cannot keep checkpoints under ``path``: a URL whose scheme is not gs://."""
  s = os.fspath(path)
  if paths.is_local(s):
    return
  scheme = s.split("://", 1)[0]
  if scheme not in CHECKPOINT_SCHEMES:
    raise ValueError(
        f"{s}: checkpoints can be written to a local path or gs:// only (Orbax "
        f"{ocp.__version__} turns {scheme}:// into a local folder named '{scheme}:'); "
        "use gs://, or a bucket mounted as a local folder")


class CheckpointIntegrityError(ValueError):
  """A checkpoint's arrays do not match the checksums saved with them."""


def _key(path) -> str:
  return "/".join(str(getattr(k, "name", getattr(k, "key", getattr(k, "idx", k)))) for k in path)


def _words(x, xp):
  """The bits of ``x`` as uint32 words (``xp``: numpy or jax.numpy)."""
  if xp is jnp and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == bool:
    return x.astype(xp.uint32)
  size = np.dtype(x.dtype).itemsize
  word = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint32}[size]
  if xp is jnp:
    u = jax.lax.bitcast_convert_type(x, word)  # 8 bytes -> a trailing axis of 2 words
  else:
    u = np.ascontiguousarray(x).view(word)
  return u.astype(xp.uint32)


def _leaf_checksum(x, xp):
  """Two uint32 sums of the words w_i: sum(w_i * (2i+1)) and sum(w_i ^ (i * phi)),
  mod 2**32. Integer sums wrap exactly in any reduction order, so the result
  does not depend on sharding or devices; any change of one word changes the
  first sum (its factor 2i+1 is odd)."""
  u = _words(x, xp)
  i = xp.arange(u.size, dtype=xp.uint32).reshape(u.shape)
  return xp.stack([xp.sum(u * (2 * i + 1), dtype=xp.uint32),
                   xp.sum(u ^ (i * np.uint32(0x9E3779B9)), dtype=xp.uint32)])


_device_checksums = jax.jit(lambda tree: jax.tree.map(lambda x: _leaf_checksum(x, jnp), tree))


def checksums(tree: Any) -> dict[str, str]:
  """``{'params/conv1/kernel': '<16 hex digits>', ...}`` for every array of
  ``tree``: a cheap bit-exact fingerprint of its values (`_leaf_checksum`),
  computed where each array lives (device arrays on device)."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  on_device = {_key(p): x for p, x in leaves if isinstance(x, jax.Array)}
  # Full reductions come back replicated: any one shard holds the value (also
  # when the arrays span several processes and are not fully addressable).
  sums = jax.tree.map(lambda a: np.asarray(a.addressable_data(0)),
                      _device_checksums(on_device)) if on_device else {}
  sums.update({_key(p): _leaf_checksum(np.asarray(x), np) for p, x in leaves
               if not isinstance(x, jax.Array)})
  return {k: f"{int(v[0]):08x}{int(v[1]):08x}" for k, v in sums.items()}


def verify(tree: Any, saved: dict[str, str], where: str) -> None:
  """Raises `CheckpointIntegrityError` naming the arrays of ``tree`` whose
  checksums differ from ``saved`` (arrays absent from ``saved`` are skipped)."""
  now = checksums(tree)
  bad = sorted(k for k in now if k in saved and saved[k] != now[k])
  if bad:
    raise CheckpointIntegrityError(
        f"{where}: {len(bad)} of {len(now)} arrays differ from the checksums saved with them "
        f"(first: {bad[0]}); its bytes were changed after saving")


class Checkpointer:
  """Wraps an Orbax `CheckpointManager` for one training run.

  Keeps the latest ``keep`` checkpoints plus the best one by ``best_metric``
  (among checkpoints saved with evaluation metrics). Saves are asynchronous:
  training continues while the arrays are written; `wait` blocks until done.
  ``config``: the run's resolved config (a JSON-able dict), stored with each
  checkpoint next to its checksums (see the module docstring).
  """

  def __init__(self, directory: str, *, every_steps: int, keep: int = 3,
               best_metric: str | None = None, best_mode: str = "max",
               async_save: bool = True, config: dict | None = None):
    if best_mode not in ("max", "min"):
      raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
    # Orbax takes epath paths (local or gs://); never abspath a URL.
    check_storage(directory)
    self.directory = paths.resolve(directory)
    self.every_steps = every_steps
    self.best_metric = best_metric
    self.config = config
    policies: list[pp.PreservationPolicy] = [pp.LatestN(n=keep)]
    if best_metric:
      policies.append(pp.BestN(get_metric_fn=lambda m: m[best_metric],
                               reverse=best_mode == "min", n=1,
                               keep_checkpoints_without_metrics=False))
    self._options = ocp.CheckpointManagerOptions(
        preservation_policy=pp.AnyPreservationPolicy(policies),
        enable_async_checkpointing=async_save, create=True)
    self.manager = self._manager()

  def _manager(self) -> ocp.CheckpointManager:
    # Named items from the start: the arrays ('default', where checkpoints
    # without an integrity item keep theirs too) and the integrity JSON.
    return ocp.CheckpointManager(self.directory, options=self._options,
                                 item_names=("default", "integrity"))

  def restore_newest_intact(self, abstract_state: Any, warn=print) -> tuple[int, Any]:
    """``(step, state)`` of the newest checkpoint that restores; ``(0, None)``
    when there is none.

    A checkpoint that cannot be read (empty, truncated, damaged) is moved to
    ``<workdir>/checkpoints_unreadable/<step>`` with a warning naming it, and
    the previous one is tried, so one bad save never blocks resuming.
    """
    for step in sorted(self.all_steps(), reverse=True):
      try:
        return step, self.restore(step, abstract_state)
      except Exception as e:  # noqa: BLE001  (any read failure: fall back, named)
        reason = (str(e).strip().splitlines() or [""])[0][:300]
        bad = self.directory / str(step)
        dest = self.directory.parent / "checkpoints_unreadable" / f"{step}.{int(time.time())}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if bad.exists():
          bad.rename(dest)
        # A fresh manager: Orbax infers the checkpoint layout from the folders
        # it finds (an empty step folder looks like a multi-item checkpoint and
        # then fails every restore), so it must not see the bad one again.
        self.manager.close()
        self.manager = self._manager()
        warn(f"warning: checkpoint {bad} cannot be restored ({type(e).__name__}: {reason}); "
             f"moved to {dest}; trying the previous one")
    return 0, None

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def should_save(self, step: int) -> bool:
    return self.every_steps > 0 and step % self.every_steps == 0

  def save(self, step: int, state: Any, metrics: dict[str, float] | None = None) -> None:
    """Starts saving ``state`` as ``step`` (no-op if that step already exists)."""
    if step in self.manager.all_steps():
      return
    if metrics is not None and self.best_metric:
      metrics = {self.best_metric: float(metrics[self.best_metric])}
    integrity = {"format": 1, "checksums": checksums(state), "config": self.config}
    saved = self.manager.save(step, args=ocp.args.Composite(
        default=ocp.args.StandardSave(state), integrity=ocp.args.JsonSave(integrity)),
        metrics=metrics, force=True)
    if not saved:  # Orbax declined (e.g. a save still in flight): say so loudly
      raise RuntimeError(f"Orbax did not save step {step} in {self.directory}")

  def integrity(self, step: int) -> dict | None:
    """The config and checksums saved with ``step`` (None if it has none)."""
    if not (self.directory / str(step) / "integrity").exists():
      return None
    return self.manager.restore(step, args=ocp.args.Composite(
        integrity=ocp.args.JsonRestore()))["integrity"]

  def restore(self, step: int, abstract_state: Any) -> Any:
    """The state saved at ``step``, placed like ``abstract_state``; its arrays
    checked against the saved checksums (`CheckpointIntegrityError`)."""
    state = self.manager.restore(step, args=ocp.args.Composite(
        default=ocp.args.StandardRestore(abstract_state)))["default"]
    saved = self.integrity(step)
    if saved is not None:
      verify(state, saved["checksums"], f"checkpoint {self.directory / str(step)}")
    return state

  def restore_subset(self, step: int, abstract_subset: dict[str, Any]) -> dict[str, Any]:
    """Only the top-level entries of ``abstract_subset`` (e.g. ``params`` and
    ``batch_stats`` for evaluation: no optimizer state is read), placed like
    the abstract arrays."""
    restore_args = jax.tree.map(
        lambda a: ocp.ArrayRestoreArgs(sharding=getattr(a, "sharding", None)), abstract_subset)
    subset = ocp.PyTreeCheckpointer().restore(
        self.directory / str(step) / "default",
        args=ocp.args.PyTreeRestore(item=abstract_subset, restore_args=restore_args,
                                    partial_restore=True))
    saved = self.integrity(step)
    if saved is not None:
      verify(subset, saved["checksums"], f"checkpoint {self.directory / str(step)}")
    return subset

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def select_step(wd: Any, ckpt: Checkpointer, config: Any, checkpoint: str | int) -> int:
  """The step of ``checkpoint``: 'latest', 'best' (by the run's evaluations of
  ``config.checkpoint.best_metric`` in metrics.jsonl) or a step number.

  ``wd``: the run's `visionjax.train.workdir.Workdir`; ``config``: its config."""
  steps = ckpt.all_steps()
  if not steps:
    raise ValueError(f"{wd} has no checkpoints in {wd.checkpoints}")
  if checkpoint == "latest":
    return max(steps)
  if checkpoint == "best":
    metric, mode = config.checkpoint.best_metric, config.checkpoint.best_mode
    if not metric:
      raise ValueError("--checkpoint=best needs config.checkpoint.best_metric, which this "
                       "run did not set; use 'latest' or a step from "
                       f"{sorted(steps)}")
    scored = {r["step"]: r[metric] for r in reporting.read_metrics(wd.path)
              if r.get("split") == "eval" and r["step"] in steps and r.get(metric) is not None}
    if not scored:
      raise ValueError(f"no checkpoint of {wd} has an evaluation of {metric!r}; "
                       f"checkpoints: {sorted(steps)}")
    pick = max if mode == "max" else min
    return pick(scored, key=lambda s: (scored[s], s))
  try:
    step = int(checkpoint)
  except (TypeError, ValueError):
    raise ValueError(f"checkpoint={checkpoint!r}; expected 'latest', 'best' or a step "
                     f"number from {sorted(steps)}") from None
  if step not in steps:
    raise ValueError(f"{wd} has no checkpoint at step {step}; it has {sorted(steps)}")
  return step
