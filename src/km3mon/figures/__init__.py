"""Drawing only: DOM maps (:mod:`.dom_map`), 8-bit palette images (:mod:`.palette_image`),
DU × floor summary maps (:mod:`.summary_map`), the AHRS summary's colour scale
(:mod:`.ahrs`), the reconstruction's figures (:mod:`.reco`), the K40 calibration's
(:mod:`.k40`), the SN monitor's (:mod:`.sn`) and the time-sync map (:mod:`.timesync`). No
process logic: nothing here imports :mod:`km3mon.runtime`."""
