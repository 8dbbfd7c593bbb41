"""visionjax.viz."""
