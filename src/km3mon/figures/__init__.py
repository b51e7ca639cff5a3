"""Drawing only: DOM maps (:mod:`.dom_map`), 8-bit palette images (:mod:`.palette_image`),
DU × floor summary maps (:mod:`.summary_map`), the AHRS summary's colour scale
(:mod:`.ahrs`) and the reconstruction's figures (:mod:`.reco`). No process logic: nothing
here imports :mod:`km3mon.runtime`."""
