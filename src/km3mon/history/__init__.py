"""History beyond "now": a per-minute store of every monitor's key metrics (:mod:`.store`),
filled once a minute by ``km3mon history`` (:mod:`.history`) from ``data/metrics/``."""
