"""visionjax.metrics."""
