#!/bin/bash
# km3mon detector settings: copy to setenv.sh, edit, then `source setenv.sh; make start`.
export DETECTOR_ID=43
# The DAQ ligier to get events (IO_EVT), timeslices (e.g. IO_TSSN) and summary slices (IO_SUM)
export DAQ_LIGIER_IP=192.168.0.110
export DAQ_LIGIER_PORT=5553
export TAGS_TO_MIRROR="IO_EVT, IO_SUM, IO_TSSN, MSG, IO_MONIT"
# Add IO_TSL1 only for the K40 calibration (km3mon k40): it is the heaviest stream, about
# 2 500 L1 hits per DOM per second = 15 kB/s per DOM: ~6 MB/s at ARCA-21, ~60 MB/s at ARCA-230
# (IO_TSSN ~0.2 kB/s per DOM). Or run k40 against the DAQ ligier directly (README: K40).
# The logger ligier (MSG)
export LOG_LIGIER_IP=192.168.0.119
export LOG_LIGIER_PORT=5553
# The command to start a ligier on the monitoring machine: Jpp's JLigier (also in a
# container, e.g. "singularity exec Jpp.sif JLigier") or the built-in "km3mon ligier"
export LIGIER_CMD="km3mon ligier"
export MONITORING_LIGIER_PORT=55530
export DETECTOR_MANAGER_IP=192.168.0.120
# The port of the dashboard and of the log viewer
export WEBSERVER_PORT=8081
export LOGGING_PORT=8082
# Detector geometry and calibration; without it the KM3NeT database is used when reachable
# (credentials the km3db way: KM3NET_DB_COOKIE, ~/.km3netdb_cookie, KM3NET_DB_USERNAME/PASSWORD)
export DETX="KM3NeT_00000043_03062019_t0set-A02087174.detx"
# Where the online reconstruction writes its time residuals
export ROYFIT_TIMERES="data/time_residuals.csv"
