"""The chaos soak (short in make test, about ten minutes in make soak)."""
