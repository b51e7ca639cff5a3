"""Run quality: a record of every run, tests against a reference, a verdict and a good-run list.

:mod:`.accumulate` counts a run's quantities from decoded summary slices, events and SN
timeslices; :mod:`.store` keeps records, minutes, overrides and reference choices in
``data/quality.sqlite3``; :mod:`.judge` compares a record with its reference and gives the
verdict; :mod:`.grl` writes the good-run list. The process is ``km3mon quality``
(:mod:`km3mon.monitors.quality`); the dashboard's ``/runs`` pages read the store.
"""
