"""A tiny training run in a process of its own, for the fault tests.

  python tests/fault_child.py DATA_DIR WORKDIR STEPS [--kill STEP:PHASE[:MS]]
                              [--fsize BYTES] [--checkpoint-every N]

Trains `spine_fixtures.tiny_config` (async checkpoints every N steps, a log
line every step) with `loop.train_and_evaluate` and prints ``done`` or
``error: <message>`` (exit 1) as the CLI does. Run it with
`child_env` (one CPU device, so a run is cheap and its bits reproducible).

``--kill STEP:PHASE[:MS]``: the process SIGKILLs itself (kill -9: no handler,
no cleanup) at one moment of step STEP:
  save      MS milliseconds after Orbax starts the asynchronous save of STEP
            (arrays being written, or the commit rename: a save cut short)
  metrics   halfway through writing STEP's line to metrics.jsonl (a torn line)
  step      after STEP's train step is dispatched, before its log line
  eval      as the final evaluation starts (STEP is ignored)
``--fsize BYTES``: RLIMIT_FSIZE with SIGXFSZ ignored, so writing past BYTES in
any one file fails with EFBIG, as a full disk fails a write with ENOSPC.
``--after-lock``: waits (after start-up) until another process holds the
workdir's lock, then trains. Before exiting it prints ``elapsed <seconds>``: the time spent in
`train_and_evaluate` (not in Python, TensorFlow and JAX start-up).
"""
from __future__ import annotations

import argparse
import os
import resource
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def child_env(compilation_cache: str | os.PathLike | None = None) -> dict:
  """Environment of a child run: one CPU device, quiet TensorFlow.

  ``compilation_cache``: a folder for JAX's persistent compilation cache, so
  that a resumed run loads the executables of the run before it instead of
  compiling them again (the same executables: results are unchanged).
  """
  env = dict(os.environ)
  if compilation_cache is not None:
    env["JAX_COMPILATION_CACHE_DIR"] = os.fspath(compilation_cache)
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
  env["JAX_PLATFORMS"] = "cpu"
  env["CUDA_VISIBLE_DEVICES"] = ""
  env["TF_CPP_MIN_LOG_LEVEL"] = "3"
  return env


def _die() -> None:
  os.kill(os.getpid(), signal.SIGKILL)


def _install_kill(loop, step: int, phase: str, ms: int) -> None:
  from visionjax.train import checkpoint as ckpt_lib
  from visionjax.train import reporting
  if phase == "save":
    save = ckpt_lib.Checkpointer.save

    def save_then_die(self, s, state, metrics=None):
      save(self, s, state, metrics)
      if s == step:
        time.sleep(ms / 1000)
        _die()
    ckpt_lib.Checkpointer.save = save_then_die
  elif phase in ("metrics", "step"):
    write = reporting.MetricWriter.write

    def write_then_die(self, s, split, metrics):
      if s == step and split == "train":
        if phase == "metrics":
          with open(self.path, "a") as f:  # half a line reaches the disk
            f.write('{"step": %d, "split": "train", "lo' % s)
        _die()
      write(self, s, split, metrics)
    reporting.MetricWriter.write = write_then_die
  elif phase == "eval":
    evaluate = loop.evaluate

    def evaluate_then_die(exp, state, *args, **kwargs):
      if kwargs.get("stop") is not None:  # the final evaluation
        _die()
      return evaluate(exp, state, *args, **kwargs)
    loop.evaluate = evaluate_then_die
  else:
    raise SystemExit(f"unknown kill phase {phase!r}")


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument("data_dir")
  p.add_argument("workdir")
  p.add_argument("steps", type=int)
  p.add_argument("--kill", default="")
  p.add_argument("--fsize", type=int, default=0)
  p.add_argument("--checkpoint-every", type=int, default=2)
  p.add_argument("--after-lock", action="store_true",
                 help="start training only once another process holds the workdir's lock")
  a = p.parse_args()
  from spine_fixtures import tiny_config

  from visionjax.train import loop
  config = tiny_config(a.data_dir, num_train_steps=a.steps, log_every_steps=1,
                       num_visualizations=0, **{"checkpoint.every_steps": a.checkpoint_every})
  if a.kill:
    step, phase, *ms = a.kill.split(":")
    _install_kill(loop, int(step), phase, int(ms[0]) if ms else 0)
  if a.fsize:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (a.fsize, a.fsize))
  print("started", flush=True)
  lock = os.path.join(a.workdir, ".lock")
  deadline = time.time() + 600
  while a.after_lock and not os.path.exists(lock) and time.time() < deadline:
    time.sleep(0.02)
  t = time.perf_counter()
  try:
    loop.train_and_evaluate(config, a.workdir)
  except (ValueError, loop.NonFiniteLossError) as e:
    print(f"elapsed {time.perf_counter() - t:.3f}", flush=True)
    sys.exit(f"error: {e}")
  print(f"elapsed {time.perf_counter() - t:.3f}", flush=True)
  print("done", flush=True)


if __name__ == "__main__":
  main()
