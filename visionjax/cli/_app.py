"""What every command does before its work: quiet logs, TensorFlow off the
accelerators, and absl flag errors reported in one line."""
from __future__ import annotations

import os
import sys
from typing import Callable, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402


def setup() -> None:
  """Warnings only (Orbax/TFDS info lines drown the progress bar, unless
  ``--verbosity`` is given); TensorFlow (tf.data only) leaves GPUs to JAX."""
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")


def parse_flags(argv: Sequence[str]) -> list[str]:
  """absl parsing, with a bad flag or config override reported in one line."""
  try:
    return flags.FLAGS(list(argv))
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    msg = " ".join(str(e).replace("\\'", "'").replace("\\n", " ").strip("'\"").split())
    if isinstance(e, AttributeError):  # ml_collections: no such config field
      msg = "unknown config key " + msg.replace("'", "", 2)
    sys.exit(f"error: bad command-line flag: {msg}")


def run(main: Callable[[list[str]], None], argv: Sequence[str] | None,
        flags_parser: Callable[[list[str]], list[str]] = parse_flags) -> None:
  """``absl.app.run`` of ``main`` on ``argv`` (default ``sys.argv``)."""
  def checked(args: list[str]) -> None:
    if len(args) > 1:
      raise app.UsageError(f"unexpected arguments: {args[1:]}")
    setup()
    main(args)
  app.run(checked, argv=list(sys.argv if argv is None else argv), flags_parser=flags_parser)
