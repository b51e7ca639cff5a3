"""pmt_hrv: the high-rate-veto images alone, for a host that splits the PMT images by DU.

The suite's pmt_rates draws these images too, from the same packets (``runtime.pmt_image``).
"""

from __future__ import annotations

import argparse

from km3mon.runtime.monitor import register_monitor
from km3mon.runtime.pmt_image import HRVImage, PMTImageMonitor


class PMTHRV(PMTImageMonitor):
    name = "pmt_hrv"
    help = "fraction of time each PMT was in high-rate veto, one image per DU"
    image_kinds = (HRVImage,)


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, PMTHRV)
