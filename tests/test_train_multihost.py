"""Two real JAX processes on localhost, 4 CPU devices each: one 8-device mesh.

`experiments/train.py --multihost` joins them through `jax.distributed`; the
gradient all-reduce crosses processes (gloo), each process reads its own half
of the data, and Orbax saves collectively. Checked against what one process
alone would do: exact evaluation counts, one log line per step (only process
0 writes), resume from the shared checkpoint, and SIGTERM delivered to the
*other* process stopping both at the same step with that step saved.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

from spine_fixtures import CNN_CONFIG, REPO, tiny_cli_flags

NUM_TEST = 32  # digit_scenes/tiny test split


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(workdir, data_dir, steps):
  """Both processes of one run, process 0 first."""
  port = _free_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
             XLA_FLAGS="--xla_force_host_platform_device_count=4")
  return [subprocess.Popen(
      [sys.executable, os.path.join(REPO, "experiments", "train.py"),
       f"--config={CNN_CONFIG}", f"--workdir={workdir}", *tiny_cli_flags(data_dir, steps),
       "--multihost", f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
       f"--process_id={i}"], env=env, cwd=REPO, stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True) for i in range(2)]


def _finish(procs, timeout=240):
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=timeout)[0])
  finally:
    for p in procs:
      p.kill()
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-4000:]
  return outs


def _log(workdir):
  return [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]


def _saved(workdir):
  return sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())


def test_two_processes_train_evaluate_resume_and_stop_together(tiny_data_dir, tmp_path):
  wd = str(tmp_path / "wd")
  outs = _finish(_launch(wd, tiny_data_dir, 4))
  assert "'num_examples': 32.0" in outs[0] and "'num_examples': 32.0" in outs[1], outs
  final = json.load(open(os.path.join(wd, "final_metrics.json")))
  assert final["step"] == 4 and final["num_examples"] == NUM_TEST  # each example once
  assert [r["step"] for r in _log(wd) if r["split"] == "train"] == [1, 2, 3, 4]
  assert _saved(wd) == [4]

  # Resume on the same workdir, then SIGTERM only process 1 (not the writer).
  procs = _launch(wd, tiny_data_dir, 100_000)
  deadline = time.time() + 180
  while time.time() < deadline and len(_log(wd)) < 5 + 3 and procs[0].poll() is None:
    time.sleep(0.3)
  procs[1].send_signal(signal.SIGTERM)
  outs = _finish(procs)
  stops = [int(o.rsplit("'preempted_at_step': ", 1)[1].split("}")[0]) for o in outs]
  assert stops[0] == stops[1] > 4, outs  # the same step on both processes
  assert _saved(wd) == [4, stops[0]]
  train_steps = [r["step"] for r in _log(wd) if r["split"] == "train"]
  assert train_steps == list(range(1, stops[0] + 1))  # resumed at 5, one line per step


def test_multihost_flags_must_come_together(tmp_path):
  r = subprocess.run(
      [sys.executable, os.path.join(REPO, "experiments", "train.py"),
       f"--config={CNN_CONFIG}", f"--workdir={tmp_path}", "--multihost",
       "--coordinator_address=127.0.0.1:1234"],
      env=dict(os.environ, JAX_PLATFORMS="cpu"), cwd=REPO, capture_output=True,
      text=True, timeout=120)
  assert r.returncode != 0
  assert "give coordinator_address, num_processes and process_id together" in r.stderr
  assert "'127.0.0.1:1234', None, None" in r.stderr
