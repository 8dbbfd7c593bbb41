"""visionjax.train: config schema, train state, steps, engines, the loop.

    from visionjax.train import base_config, train_and_evaluate
    config = base_config()            # or experiments/configs/<name>.get_config()
    metrics = train_and_evaluate(config, workdir="/tmp/run")
"""
from visionjax.train.config import base_config, validate
from visionjax.train.loop import NonFiniteLossError, build, evaluate, train_and_evaluate

__all__ = ["base_config", "validate", "build", "evaluate", "train_and_evaluate",
           "NonFiniteLossError"]
