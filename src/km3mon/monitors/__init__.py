"""Monitoring processes: one module per supervisord program, all on :mod:`.runtime`."""
