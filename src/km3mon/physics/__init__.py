"""Kernels with no I/O, between the decoders and the monitors that draw their results.

:mod:`.hits` reads a hit from timeslice payload bytes, :mod:`.twofolds` counts K40
coincidences per PMT pair, :mod:`.k40_fit` fits them and solves each DOM for PMT offsets,
widths and efficiencies, :mod:`.coincidences` finds the multiplicity of each SN-stream
coincidence, :mod:`.pmts` places a detector's PMTs in (slot, channel) tables, :mod:`.k40`
holds the PMT-pair geometry and a calibration period's result, :mod:`.sn` the muon veto and
the supernova trigger statistics, :mod:`.timesync` the judgement of each DOM's time sync and
UDP completeness and the grouping of DOMs by DataFilter. The reconstruction kernels are
:mod:`km3mon.reco`. Nothing here imports :mod:`km3mon.runtime`.
"""
