"""visionjax.train."""
