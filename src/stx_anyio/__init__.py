"""stx_anyio."""
