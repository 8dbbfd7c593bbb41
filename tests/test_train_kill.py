"""kill -9 at random moments of a tiny training run, each followed by a resume:
the final state equals an uninterrupted run's bit for bit.

Each run is a process of its own (`fault_child.py`, one CPU device) that
SIGKILLs itself at a drawn moment: Orbax's asynchronous save cut short after a
random delay (arrays half written, or before the commit), halfway through a
metrics.jsonl line, after a train step, or as the final evaluation starts.
Some rounds are killed from outside instead, at a random time after start.
The default test kills once, as Orbax starts writing a save (the path the
others share: a resume from the checkpoint before); the slow one draws 12
kills of every kind (seed: $KILL_SEED, default 14).
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

from fault_child import child_env
import numpy as np
import pytest

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fault_child.py")


def _start(data_dir, wd, steps, *flags):
  # One compilation cache for the runs of a test (each resume loads the
  # executables instead of compiling them again).
  return subprocess.Popen([sys.executable, CHILD, data_dir, str(wd), str(steps), *flags],
                          env=child_env(wd.parent / "jax_cache"), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _final_state(wd, steps):
  import orbax.checkpoint as ocp
  return ocp.StandardCheckpointer().restore(os.path.join(wd, "checkpoints", str(steps),
                                                         "default"))


def _kill_from_outside(proc, wd, delay):
  """SIGKILL ``delay`` seconds after the run holds its workdir lock."""
  deadline = time.time() + 600
  while not (wd / ".lock").exists() and proc.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  time.sleep(delay)
  proc.send_signal(signal.SIGKILL)


def _run_with_kills(data_dir, wd, steps, kills, after_round=None):
  """One round per kill (each a resume of the last), then one to finish.
  ``after_round(i)``: called after round ``i`` (checks what the kill left)."""
  died = 0
  for i, kill in enumerate(kills):
    if kill[0] == "outside":
      proc = _start(data_dir, wd, steps)
      _kill_from_outside(proc, wd, kill[1])
    else:
      proc = _start(data_dir, wd, steps, "--kill", kill[1])
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode in (-signal.SIGKILL, 0), out[-3000:]
    died += proc.returncode == -signal.SIGKILL
    if after_round is not None:
      after_round(i)
  proc = _start(data_dir, wd, steps)
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0 and "done" in out, out[-3000:]
  return died


def _draw_kills(rng, n, steps):
  """``n`` kill moments, in step order and 3 steps apart (a round resumes at
  most 2 steps back, at the last checkpoint), so every self-kill fires."""
  kinds = ["save", "metrics", "step", "outside"]
  kills = []
  picks = sorted(rng.sample(range(1, (steps - 1) // 3), n - 1))
  for i, step in enumerate([3 * p for p in picks] + [None]):
    if step is None:
      kills.append(("eval", f"{steps}:eval"))
      continue
    kind = kinds[i % len(kinds)]
    if kind == "save":
      step += step % 2  # checkpoints every 2 steps
      kills.append(("save", f"{step}:save:{rng.randint(0, 40)}"))
    elif kind == "outside":
      kills.append(("outside", rng.uniform(0.0, 3.0)))
    else:
      kills.append((kind, f"{step}:{kind}"))
  return kills


def _assert_same_final_state(data_dir, tmp_path, steps, kills, after_round=None):
  reference = _start(data_dir, tmp_path / "reference", steps)  # meanwhile, on another core
  killed = tmp_path / "killed"
  died = _run_with_kills(data_dir, killed, steps, kills, after_round)
  out, _ = reference.communicate(timeout=600)
  assert reference.returncode == 0, out[-3000:]
  expected, got = _final_state(tmp_path / "reference", steps), _final_state(killed, steps)
  leaves = lambda t: __import__("jax").tree_util.tree_flatten_with_path(t)[0]
  assert [p for p, _ in leaves(expected)] == [p for p, _ in leaves(got)]
  for (path, a), (_, b) in zip(leaves(expected), leaves(got)):
    np.testing.assert_array_equal(a, b, err_msg=str(path))
  return died


def test_kill_9_mid_save_then_resume_is_exact(tiny_data_dir, tmp_path):
  wd = tmp_path / "killed"

  def left_behind(i):  # killed as Orbax began writing step 4: never committed
    assert "4" not in os.listdir(wd / "checkpoints")

  assert _assert_same_final_state(tiny_data_dir, tmp_path, 12, [("save", "4:save:0")],
                                  left_behind) == 1


@pytest.mark.slow
def test_kill_9_at_12_random_moments_then_resume_is_exact(tiny_data_dir, tmp_path):
  rng = random.Random(int(os.environ.get("KILL_SEED", "14")))
  kills = _draw_kills(rng, 12, 40)
  died = _assert_same_final_state(tiny_data_dir, tmp_path, 40, kills)
  print(f"{died} kills: {kills}")
  assert died >= 10, kills  # the outside kills may land after the run ended
