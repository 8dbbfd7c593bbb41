"""Orbax checkpointing: periodic + best-by-metric, async, resumable."""
from __future__ import annotations

import time
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from visionjax import paths


class Checkpointer:
  """Wraps an Orbax `CheckpointManager` for one training run.

  Keeps the latest ``keep`` checkpoints plus the best one by ``best_metric``
  (among checkpoints saved with evaluation metrics). Saves are asynchronous:
  training continues while the arrays are written; `wait` blocks until done.
  """

  def __init__(self, directory: str, *, every_steps: int, keep: int = 3,
               best_metric: str | None = None, best_mode: str = "max",
               async_save: bool = True):
    if best_mode not in ("max", "min"):
      raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
    # Orbax takes epath paths (local or gs://); never abspath a URL.
    self.directory = paths.resolve(directory)
    self.every_steps = every_steps
    self.best_metric = best_metric
    policies: list[pp.PreservationPolicy] = [pp.LatestN(n=keep)]
    if best_metric:
      policies.append(pp.BestN(get_metric_fn=lambda m: m[best_metric],
                               reverse=best_mode == "min", n=1,
                               keep_checkpoints_without_metrics=False))
    self._options = ocp.CheckpointManagerOptions(
        preservation_policy=pp.AnyPreservationPolicy(policies),
        enable_async_checkpointing=async_save, create=True)
    self.manager = ocp.CheckpointManager(self.directory, options=self._options)

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
        self.manager = ocp.CheckpointManager(self.directory, options=self._options)
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
    saved = self.manager.save(step, args=ocp.args.StandardSave(state), metrics=metrics,
                              force=True)
    if not saved:  # Orbax declined (e.g. a save still in flight): say so loudly
      raise RuntimeError(f"Orbax did not save step {step} in {self.directory}")

  def restore(self, step: int, abstract_state: Any) -> Any:
    """The state saved at ``step``, placed like ``abstract_state``."""
    return self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

  def restore_subset(self, step: int, abstract_subset: dict[str, Any]) -> dict[str, Any]:
    """Only the top-level entries of ``abstract_subset`` (e.g. ``params`` and
    ``batch_stats`` for evaluation: no optimizer state is read), placed like
    the abstract arrays."""
    restore_args = jax.tree.map(
        lambda a: ocp.ArrayRestoreArgs(sharding=getattr(a, "sharding", None)), abstract_subset)
    return ocp.PyTreeCheckpointer().restore(
        self.directory / str(step) / "default",
        args=ocp.args.PyTreeRestore(item=abstract_subset, restore_args=restore_args,
                                    partial_restore=True))

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
