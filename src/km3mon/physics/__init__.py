"""Physics on timeslice hits: K40 twofold counting and intra-DOM calibration, SN coincidences.

Between the decoders (:mod:`km3mon.daq.timeslice`) and the monitors that draw the results
(``k40``, ``sn``): :mod:`.hits` reads a hit from the payload bytes, :mod:`.twofolds` counts
coincidences per PMT pair, :mod:`.k40_fit` fits them and solves each DOM for PMT offsets,
widths and efficiencies, :mod:`.coincidences` finds the multiplicity of each SN-stream
coincidence.
"""
