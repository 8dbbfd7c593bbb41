"""`train_and_evaluate(config, workdir)`: the one training loop.

Resume order: the newest checkpoint in ``<workdir>/checkpoints``, else a fresh
initialization. What lands in the workdir:

  config.json          the resolved config
  metrics.jsonl        one JSON object per log/eval event
  tensorboard/         TensorBoard event files
  checkpoints/<step>/  Orbax checkpoints (latest k + best by metric)
  final_metrics.json   the final evaluation
  learning_curves.png  loss/metric curves
  predictions.png      overlays (segmentation) or predictions (classification)
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import signal
import time
from typing import Any, Iterator

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm  # notebook widget in Jupyter/Colab, text bar in a terminal

from visionjax import models, tasks
from visionjax.data import pipeline, prepared
from visionjax.train import checkpoint as ckpt_lib
from visionjax.train import config as config_lib
from visionjax.train import disk, optim, parallel, reporting, steps, transfer
from visionjax.train import workdir as workdir_lib
from visionjax.train.state import init_state


def _isatty() -> bool:
  import sys
  return sys.stderr.isatty()


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN/inf loss or gradient."""


class BadBatchError(ValueError):
  """A batch holds values the task cannot train on (`Task.check_values`)."""


@dataclasses.dataclass(frozen=True)
class _BadBatch:
  """Stands in the input stream for the batch of ``step`` that could not be
  read or failed `Task.check_values`, so the run stops exactly before that
  step (the batches ahead of it in the prefetch queue are still trained on).
  ``what``: "has a bad value: ..." / "could not be read"; ``detail`` ends the
  message (what to do)."""
  step: int
  what: str
  detail: str


def _checked_batches(batches: Iterator[dict], task: tasks.Task, start: int,
                     read_error, dataset: str) -> Iterator[Any]:
  """``batches`` (host NumPy, the batch of step start+1 first), each checked by
  ``task.check_values``; the first bad or unreadable one becomes a `_BadBatch`
  and ends it. ``read_error(e)``: the error naming the damaged file."""
  it = iter(batches)
  step = start
  while True:
    step += 1
    try:
      batch = next(it)
    except StopIteration:
      return
    except Exception as e:  # noqa: BLE001  (tf.data's DataLossError, NotFoundError...)
      yield _BadBatch(step, "could not be read", f": {read_error(e)}")
      return
    try:
      task.check_values(batch)
    except ValueError as e:
      yield _BadBatch(step, f"has a bad value: {e}",
                      f". Fix or re-prepare the dataset {dataset!r}")
      return
    yield batch


@dataclasses.dataclass
class Experiment:
  """Everything built from a config that the loop and the tests need."""
  config: ml_collections.ConfigDict
  data: pipeline.Data
  engine: Any
  model: Any
  task: tasks.Task
  tx: Any
  schedule: Any
  init_fn: Any
  rng: jax.Array
  channels: int

  @functools.cached_property
  def train_step(self):
    return self.engine.compile_train(functools.partial(
        steps.train_step, model=self.model, tx=self.tx, task=self.task,
        schedule=self.schedule, channels=self.channels,
        axis_name=self.engine.axis_name, freeze=self.config.freeze,
        freeze_until_step=int(self.config.freeze_until_step)))

  @functools.cached_property
  def eval_step(self):
    return self.engine.compile_eval(functools.partial(
        steps.eval_step, model=self.model, task=self.task, channels=self.channels,
        axis_name=self.engine.axis_name))

  def create_state(self):
    return self.engine.create_state(self.init_fn, self.rng)

  def abstract_state(self):
    return self.engine.abstract_state(self.init_fn, self.rng)

  def train_dataset(self, start_step: int = 0):
    """The training input (`visionjax.data.pipeline.train_dataset`)."""
    return pipeline.train_dataset(self.data, self.task, batch_size=self.config.batch_size,
                                  seed=self.config.seed, start_step=start_step)

  @property
  def eval_batch_size(self) -> int:
    """``config.eval_batch_size`` rounded up to a multiple of the device count:
    evaluation batches are padded anyway, so users need not know the count."""
    n = jax.device_count()
    return -(-int(self.config.eval_batch_size) // n) * n

  def eval_batches(self, split: str | None = None):
    """Padded evaluation batches (`visionjax.data.pipeline.eval_batches`)."""
    return pipeline.eval_batches(self.data, self.task, split=split,
                                 batch_size=self.eval_batch_size)

  def check_data(self) -> None:
    """Fails now, not after training, on what the data would fail on later:
    prepares the dataset, checks both splits exist and the batch size
    splits over the devices, and reads one evaluation batch."""
    self.data.prepare()
    pipeline.host_batch_size(self.config.batch_size)
    for split in (self.config.dataset.train_split, self.config.dataset.eval_split):
      pipeline.max_host_share(self.data, split, all_datasets=True)
    split = self.config.dataset.eval_split
    try:
      next(iter(self.eval_batches()))
    except Exception as e:  # noqa: BLE001  (any read/decode failure, re-raised named)
      raise ValueError(f"cannot read the evaluation split {split!r} of "
                       f"{self.config.dataset.name!r}: "
                       f"{prepared.read_error(self.data.builders, split, e)}") from None

  @property
  def class_names(self) -> tuple[str, ...]:
    return self.data.class_names(self.task.annotation)


def build(config: ml_collections.ConfigDict, *, devices: list | None = None) -> Experiment:
  """Validates ``config`` and builds data, engine, model, task and optimizer."""
  config_lib.validate(config)
  engine = parallel.make_engine(config.engine, devices)
  data = pipeline.resolve(config.dataset)
  info = data.info
  image_shape = tuple(config.dataset.image_size or info.features["image"].shape[:2])
  channels = int(info.features["image"].shape[-1])
  num_classes = data.num_classes(tasks.REGISTRY[config.task].annotation)
  model_kwargs = {k: v for k, v in config.model.to_dict().items() if k != "name"}
  if config.half_precision:
    model_kwargs["dtype"] = jnp.bfloat16
  model_task = models.task_of(config.model.name)
  if model_task != config.task:
    raise ValueError(f"model {config.model.name!r} is a {model_task} model; task "
                     f"{config.task!r} needs one of {models.list_models(config.task)}")
  try:
    model = models.create(config.model.name, num_classes=num_classes, **model_kwargs)
  except TypeError as e:
    raise ValueError(f"bad option for model {config.model.name!r}: {e}") from None
  task = tasks.create(config.task, num_classes, **config.task_kwargs.to_dict())
  tx, schedule = optim.make_optimizer(
      config.optimizer, config.num_train_steps, freeze=config.freeze,
      freeze_until_step=int(config.freeze_until_step),
      finetune_learning_rate_scale=float(config.finetune_learning_rate_scale))
  model = engine.model_for(model)
  init_fn = functools.partial(init_state, model=model, tx=tx,
                              input_shape=(1, *image_shape, channels))
  return Experiment(config=config, data=data, engine=engine, model=model, task=task, tx=tx,
                    schedule=schedule, init_fn=init_fn,
                    rng=jax.random.PRNGKey(config.seed), channels=channels)


def evaluate(exp: Experiment, state: Any, split: str | None = None,
             progress: bool = False, stop=None) -> dict[str, Any]:
  """Exact metrics over one pass of ``split`` (default: the eval split).

  Each batch's sums are added on device; the task's per-example outputs
  (detection: padded detections), if any, are gathered to host and folded
  into its ``eval_update`` state. The result is ``task.summarize(sums, state)``.
  ``stop``: polled before each batch; when it returns True, `_StopRequested`.
  """
  totals, acc = None, None
  for i, batch in enumerate(tqdm(exp.eval_batches(split), desc="eval", disable=not progress,
                                 leave=False)):
    if stop is not None and stop():
      raise _StopRequested()
    try:
      exp.task.check_values(batch)
    except ValueError as e:
      name = split or exp.config.dataset.eval_split
      raise BadBatchError(f"evaluation batch {i} of split {name!r} has a bad value: {e}; "
                          "fix or re-prepare the dataset") from None
    sums, examples = exp.eval_step(state, exp.engine.put_batch(batch))
    if acc is None:
      acc = exp.task.eval_init(batch["image"].shape[1:3])
    acc = exp.task.eval_update(acc, exp.engine.fetch_examples(examples))
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  return exp.task.summarize(exp.engine.fetch(totals), acc)


class _Preemption:
  """SIGTERM (and a first Ctrl-C) as a stop the run polls (it saves, then exits 0).

  Installed for the whole run: start-up, the step loop, the final evaluation
  and teardown. In the loop the flag is read once per step, after which the
  state is saved and the run stops; during the final evaluation (whose
  checkpoint is already saved) it stops at the next batch. A second Ctrl-C
  interrupts at once.

  One process: our handlers set a flag. Several processes (after
  `jax.distributed.initialize`): JAX's preemption service already catches
  SIGTERM on any host and agrees a step with every other host
  (`multihost_utils.reached_preemption_sync_point`), so all hosts take the
  collective checkpoint save of the same step and stop together. A Python
  handler of our own would replace that service's one and leave each host
  stopping at a different step (the save would hang).
  """

  def __init__(self):
    self.requested = False
    self.signal_name = ""
    self.multihost = jax.process_count() > 1

  def _handler(self, signum, frame):
    del frame
    if self.requested and signum == signal.SIGINT:  # second Ctrl-C: stop now
      raise KeyboardInterrupt
    self.requested = True
    self.signal_name = signal.Signals(signum).name

  def reached(self, step: int) -> bool:
    """Whether to save and stop after ``step`` (call every step on every host)."""
    if not self.multihost:
      return self.requested
    try:
      return multihost_utils.reached_preemption_sync_point(step)
    except RuntimeError:  # the service is off (jax_enable_preemption_service)
      return False

  @contextlib.contextmanager
  def installed(self):
    if self.multihost:  # JAX's preemption service owns SIGTERM
      yield self
      return
    try:
      previous = {s: signal.signal(s, self._handler) for s in (signal.SIGTERM, signal.SIGINT)}
    except ValueError:  # not the main thread: leave signals alone
      yield self
      return
    try:
      yield self
    finally:
      for s, handler in previous.items():
        signal.signal(s, handler)


class _StopRequested(Exception):
  """Raised between evaluation batches when a stop was requested."""


def _check_finite(metrics: dict[str, np.ndarray], step: int, ckpt, exp: Experiment) -> None:
  """Raises `NonFiniteLossError` on a NaN/inf loss or gradient norm, naming the
  newest checkpoint that restores: saves in flight are finished first, and
  each candidate is restored and verified (a damaged one is moved aside with
  a warning, as on resume), so the named one is known to work."""
  loss, gnorm = float(metrics["loss"]), float(metrics["grad_norm"])
  if not (math.isfinite(loss) and math.isfinite(gnorm)):
    ckpt.wait()
    last, _ = ckpt.restore_newest_intact(exp.abstract_state(), warn=tqdm.write)
    where = (f"the last good checkpoint is step {last} in {ckpt.directory} (restored and "
             "verified)" if last else "no checkpoint was saved before it")
    raise NonFiniteLossError(
        f"non-finite loss at step {step} (loss={loss}, grad_norm={gnorm}); "
        f"training stopped and {where}")


def _stop_on_bad_batch(bad: _BadBatch, exp: Experiment, state: Any, ckpt, pending,
                       start: int) -> None:
  """Saves the state before ``bad.step`` (unless it is the restored one) and
  raises `BadBatchError` naming the step and the bad value or damaged file."""
  if pending is not None:
    _check_finite(exp.engine.fetch(pending[1]), pending[0], ckpt, exp)
  saved = ""
  if bad.step - 1 > start:
    ckpt.save(bad.step - 1, exp.engine.to_checkpoint(state))
    ckpt.wait()
    saved = f" (checkpoint of step {bad.step - 1} saved)"
  raise BadBatchError(f"the training batch of step {bad.step} {bad.what}; training stopped "
                      f"before step {bad.step}{saved}{bad.detail}")


def _check_resume_config(config: ml_collections.ConfigDict, wd: workdir_lib.Workdir,
                         main: bool) -> None:
  """Refuses to resume a run with a config that changes its meaning (naming
  each change) unless ``config.resume_changed``; keeps every config used."""
  resuming = wd.config_json.exists() and wd.checkpoints.exists() and any(
      p.name.isdigit() for p in wd.checkpoints.iterdir())
  if resuming:
    saved = wd.config_json.read_text()
    meaning, other = config_lib.resume_changes(saved, config)
    if meaning and not config.resume_changed:
      raise ValueError(
          f"{wd} holds a run with another config; resuming it with this one would change "
          "what it means:\n  " + "\n  ".join(meaning) + "\nUse another --workdir, or "
          "--config.resume_changed=True to resume with these changes on purpose.")
    if (meaning or other) and main:
      archive = wd.path / "configs" / f"config.{int(time.time())}.json"
      archive.parent.mkdir(parents=True, exist_ok=True)
      archive.write_text(saved)  # every config the run has used is kept
      for line in meaning + other:
        tqdm.write(f"resuming with a changed config: {line}")
  if main:
    wd.config_json.write_text(config.to_json_best_effort(indent=2))


def _train_log(task, window: list[dict], seconds: float) -> dict[str, float]:
  sums = {k: np.sum([w[k] for w in window], axis=0) for k in window[0]}
  out = {"loss": float(np.mean([w["loss"] for w in window])),
         "grad_norm": float(np.mean([w["grad_norm"] for w in window])),
         "param_norm": float(window[-1]["param_norm"]),
         "learning_rate": float(window[-1]["learning_rate"]),
         "steps_per_sec": len(window) / max(seconds, 1e-9)}
  out.update(task.summarize_train(sums))
  return out


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (resuming if the workdir has a checkpoint), evaluates, reports.

  Returns the final evaluation metrics (also in ``final_metrics.json``).
  Raises `NonFiniteLossError` on a NaN/inf loss, naming the step, and
  `disk.DiskFullError` (one line: what, where, "free space and rerun") when a
  write fails for lack of space; rerunning resumes from the last checkpoint.
  """
  config_lib.validate(config)
  ckpt_lib.check_storage(workdir)  # before the workdir is created: s3:// would fail later
  wd = workdir_lib.Workdir.create(workdir)
  main = jax.process_index() == 0
  # One writer per workdir (process 0 of a multi-host run holds it for all).
  with _Preemption().installed() as preempt, (
      wd.lock() if main else contextlib.nullcontext()) as lease, \
      disk.quiet_orbax_disk_errors():
    try:
      return _train_and_evaluate(config, wd, lease, preempt)
    except Exception as e:  # noqa: BLE001  (a full disk, in any of its shapes, as one line)
      full = disk.disk_full_error(e, wd.path)
      if full is None:
        raise
      raise full from None


def _train_and_evaluate(config: ml_collections.ConfigDict, wd: workdir_lib.Workdir,
                        lease: workdir_lib.Lease | None, preempt: _Preemption
                        ) -> dict[str, Any]:
  exp = build(config)
  exp.check_data()  # before the first step: a bad split must not cost a training run
  main = jax.process_index() == 0
  _check_resume_config(config, wd, main)
  cc = config.checkpoint
  ckpt = ckpt_lib.Checkpointer(wd.checkpoints,
                               every_steps=cc.every_steps, keep=cc.keep,
                               best_metric=cc.best_metric or None,
                               best_mode=cc.best_mode, async_save=cc.async_save,
                               config=json.loads(config.to_json_best_effort()))
  abstract = exp.abstract_state()
  transfer.check_freeze(config, abstract.params)
  start, restored = ckpt.restore_newest_intact(abstract, warn=tqdm.write)
  state = exp.engine.from_checkpoint(restored) if start else exp.create_state()
  if not start and config.init_from:  # a resumed run has its own checkpoint
    state, _ = transfer.start_from(config, state, engine=exp.engine, tx=exp.tx,
                                   log=tqdm.write if main else None,
                                   report_dir=wd.path if main else None)
  writer = reporting.MetricWriter(wd.path, enabled=main)
  total = config.num_train_steps
  # Values are checked on host (NumPy) before the device copy; a bad batch
  # travels the prefetch queue as a `_BadBatch`, raised at its own step.
  batches: Iterator = parallel.prefetch_to_device(
      _checked_batches(exp.train_dataset(start_step=start).as_numpy_iterator(), exp.task, start,
                       functools.partial(prepared.read_error, exp.data.builders,
                                         config.dataset.train_split), config.dataset.name),
      lambda b: b if isinstance(b, _BadBatch) else exp.engine.put_batch(b))
  eval_metrics: dict[str, Any] | None = None
  window, t_window = [], time.time()
  pending = None  # (step, device metrics) of the previous step, checked 1 step late
  stopped_early = False
  try:
    with tqdm(
        total=total, initial=start, desc="train", disable=not (main and config.progress_bar),
        dynamic_ncols=True, mininterval=0.5 if _isatty() else 30.0) as bar:
      for step in range(start + 1, total + 1):
        batch = next(batches)
        if isinstance(batch, _BadBatch):
          _stop_on_bad_batch(batch, exp, state, ckpt, pending, start)
        state, metrics = exp.train_step(state, batch)
        # Fetch the previous step's metrics while this one runs.
        if pending is not None:
          window.append(exp.engine.fetch(pending[1]))
          _check_finite(window[-1], pending[0], ckpt, exp)
        pending = (step, metrics)
        bar.update(1)
        # Read the flag once: a SIGTERM landing later in this iteration must not
        # skip the save below yet still stop the loop (it is seen next step).
        stop = preempt.reached(step)
        due_ckpt = ckpt.should_save(step) or stop
        due_eval = config.eval_every_steps and step % config.eval_every_steps == 0
        if step % config.log_every_steps == 0 or due_ckpt or due_eval or step == total:
          window.append(exp.engine.fetch(metrics))  # sync: this step is checked too
          _check_finite(window[-1], step, ckpt, exp)
          pending = None
          log = _train_log(exp.task, window, time.time() - t_window)
          writer.write(step, "train", log)
          if lease is not None:
            lease.renew()
          bar.set_postfix(loss=f"{log['loss']:.4f}", refresh=False)
          window, t_window = [], time.time()
        if due_eval and step != total:
          eval_metrics = evaluate(exp, state)
          writer.write(step, "eval", eval_metrics)
        if due_ckpt or due_eval:
          ckpt.save(step, exp.engine.to_checkpoint(state),
                    metrics=eval_metrics if due_eval else None)
        if stop:
          ckpt.wait()  # the preemption checkpoint is on disk before we exit
          stopped_early = True
          tqdm.write(f"{preempt.signal_name or 'SIGTERM'} received: saved checkpoint at step "
                     f"{step}; exiting.")
          break
    if not stopped_early:
      final_step = int(exp.engine.fetch(state.step))
      # Saved before the final evaluation, so a failure or a kill during it
      # loses no training. (Without metrics: `best` selection reads the
      # evaluations from metrics.jsonl; the newest checkpoint is always kept.)
      ckpt.save(final_step, exp.engine.to_checkpoint(state))
      try:
        eval_metrics = evaluate(exp, state, progress=main and config.progress_bar,
                                stop=lambda: preempt.requested)
      except _StopRequested:
        ckpt.wait()
        tqdm.write(f"{preempt.signal_name} received during the final evaluation: the "
                   f"checkpoint of step {final_step} is saved; exiting.")
        return {"preempted_at_step": final_step}
      writer.write(final_step, "eval", eval_metrics)
  finally:
    ckpt.close()  # waits for async saves: nothing half-written is left behind
    writer.close()
  if stopped_early:
    return {"preempted_at_step": step}
  if main:
    with disk.names_file(wd.final_metrics):
      wd.final_metrics.write_text(json.dumps(
          reporting.jsonable({"step": final_step, **eval_metrics}), indent=2))
    _visualize(exp, state, wd)
  return eval_metrics


def _visualize(exp: Experiment, state: Any, wd: workdir_lib.Workdir) -> None:
  """Learning curves and the task's picture of some eval predictions."""
  from visionjax.viz import curves
  with disk.names_file(wd.file("learning_curves.png")):
    curves.plot_learning_curves(reporting.read_metrics(wd.path),
                                os.fspath(wd.file("learning_curves.png")))
  with disk.names_file(wd.file("predictions.png")):
    visualize_predictions(exp, parallel.host_copy(exp.engine.to_checkpoint(state)),
                          os.fspath(wd.file("predictions.png")))


def visualize_predictions(exp: Experiment, host_state: Any, path: str) -> None:
  """The task's picture of ``config.num_visualizations`` eval predictions.

  ``host_state``: one copy of the state (`parallel.host_copy`), run on one
  device.
  """
  n = exp.config.num_visualizations
  if n <= 0:
    return
  batch = next(exp.eval_batches())
  model = parallel.clone_for_axis(exp.model, None)  # one device, no collectives
  predictions = jax.jit(functools.partial(steps.predict_step, model=model, task=exp.task))(
      host_state, {k: v[:n] for k, v in batch.items()})
  dc = exp.config.dataset
  images = np.clip(batch["image"][:n] * np.asarray(dc.std) + np.asarray(dc.mean), 0, 1)
  exp.task.visualize(images, batch, jax.device_get(predictions), exp.class_names, path)
