"""The dashboard: pages of plots with live updates, freshness, a JSON API and Prometheus metrics.

It only reads what the monitors write (``plots/``, ``data/freshness``, ``data/metrics``), so it
imports nothing from the monitors and can run on another host that shares those folders.
"""
