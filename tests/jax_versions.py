"""JAX APIs the tests use that moved between the versions pyproject allows
(JAX 0.6 is the newest on Python 3.10; current JAX needs 3.11)."""
import jax

try:
  enable_x64 = jax.enable_x64  # JAX >= 0.7
except AttributeError:  # JAX 0.6
  from jax.experimental import enable_x64  # noqa: F401
