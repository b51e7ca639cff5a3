"""Alerts that reach the shifter, and the shift report.

``km3mon alerts`` evaluates rules (:mod:`.rules`) over what the monitors already publish
(freshness records, ``data/metrics/*.json``, supervisord's states, the disk), keeps every alert's
life in ``data/km3mon.sqlite3`` (:mod:`.book`) and delivers notifications to the DAQ log, a
webhook and e-mail (:mod:`.sinks`). ``km3mon shift-report`` summarises a shift (:mod:`.report`).
"""
