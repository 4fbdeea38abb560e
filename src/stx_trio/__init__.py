"""stx_trio."""
