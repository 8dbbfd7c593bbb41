"""visionjax.models."""
