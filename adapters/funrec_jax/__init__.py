"""funrec_jax."""
