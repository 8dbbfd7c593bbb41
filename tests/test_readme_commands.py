"""Every command README.md shows parses: its subcommand exists, each flag is
one that subcommand defines, and a `visionjax train` command's config (the
shipped name or file plus every ``--config.*`` override, parsed by the same
ml_collections flag the CLI uses) passes `visionjax.train.config.validate`.

A renamed config, a removed flag or a misspelled override in the README used
to surface only when a newcomer pasted it. What a command does once parsed
is covered by the tests of that command (`test_cli.py`, `test_train_storage.py`
for `gs://` workdirs, `test_quickstart_guard.py` for the first command).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
# `visionjax X` and `python -m visionjax X` dispatch to `visionjax.cli.X`.
SUBCOMMANDS = ("train", "evaluate", "predict", "export", "baselines")


def _readme_commands() -> list[list[str]]:
  """The visionjax commands in README.md's bash blocks, as argv lists."""
  text = open(README, encoding="utf-8").read()
  commands = []
  for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
    block = block.replace("\\\n", " ")  # continuation lines
    for line in block.splitlines():
      for part in line.split("&&"):
        argv = shlex.split(part, comments=True)
        if argv[:1] == ["visionjax"]:
          argv = argv[1:]
        elif argv[:3] == ["python", "-m", "visionjax"]:
          argv = argv[3:]
        else:
          continue
        if argv not in commands:
          commands.append(argv)
  return commands


COMMANDS = _readme_commands()


def test_the_readme_shows_the_commands_this_test_reads():
  """Guards the parser above: the README's first command and the other
  subcommands are found (an empty list would make the test below vacuous)."""
  assert ["train", "--config=unet_scenes", "--workdir=runs/unet_scenes"] in COMMANDS
  assert {c[0] for c in COMMANDS} >= set(SUBCOMMANDS)
  assert sum(c[0] == "train" for c in COMMANDS) >= 6


# One child process per subcommand: the command modules share absl's
# process-global flags (two define --workdir), so they cannot all be imported
# here. The child parses each command as the CLI does and prints one line per
# command: "ok" or the error. sys.argv is set per command because
# ml_collections' config flag reads its --config.* overrides from sys.argv.
_CHILD = """
import json, sys
from visionjax.cli import _app
sub, commands = sys.argv[1], json.loads(sys.argv[2])
module = __import__("visionjax.cli." + sub, fromlist=["_"])
from visionjax.train import config as config_lib
for args in commands:
  sys.argv = ["visionjax " + sub] + args
  try:
    if sub == "train":
      from absl import flags            # the previous command's override flags go
      for name in [n for n in flags.FLAGS if n.startswith("config.")]:
        delattr(flags.FLAGS, name)
      module.parse_flags(sys.argv)      # the CLI's own parsing: config name, flags, overrides
      config_lib.validate(module._CONFIG.value)
    else:
      _app.parse_flags(sys.argv)
    print("ok", flush=True)
  except BaseException as e:            # sys.exit("error: ...") included
    print(repr(e).replace(chr(10), " "), flush=True)
"""


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_readme_commands_parse_and_their_configs_validate(sub):
  commands = [c[1:] for c in COMMANDS if c[0] == sub]
  out = subprocess.run([sys.executable, "-c", _CHILD, sub, json.dumps(commands)],
                       capture_output=True, text=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  results = out.stdout.splitlines()
  assert len(results) == len(commands), out.stderr
  bad = [f"visionjax {sub} {' '.join(c)}\n    -> {r}"
         for c, r in zip(commands, results) if r != "ok"]
  assert not bad, "README commands that do not parse:\n" + "\n".join(bad)
