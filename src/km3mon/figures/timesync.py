"""The time-sync monitor's figure (``km3mon.monitors.timesync``): each DOM's state on the
DU × floor map, titled with the frames per second and the count of DOMs in each state."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from km3mon.figures.dom_map import dom_states_map
from km3mon.physics.timesync import EXPECTED_FRAMES_PER_S, MISSING, STATES, WINDOW_S

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from km3mon.detector import Detector


def timesync_map(
    detector: Detector, dom_index: np.ndarray, state: np.ndarray, frames_per_s: np.ndarray
) -> Figure:
    """The map of ``state`` (index into :data:`STATES`) of the DOMs at detector rows
    ``dom_index``; the title gives the median and lowest frames per second of the DOMs
    sending."""
    values = np.full(len(detector.dom_ids), -1)
    values[dom_index] = state
    counts = [int((state == k).sum()) for k in range(len(STATES))]
    seen = np.isfinite(frames_per_s) & (state != MISSING)
    rate = (
        f"frames/s per DOM sending: median {np.median(frames_per_s[seen]):.1f}, lowest "
        f"{frames_per_s[seen].min():.1f} (of {EXPECTED_FRAMES_PER_S})\n"
        if seen.any()
        else ""
    )
    title = (
        f"Time sync and UDP completeness, detector {detector.det_id} "
        f"(IO_SUM, last {WINDOW_S} s)\n{rate}"
        + ", ".join(f"{c} {s}" for c, s in zip(counts, STATES, strict=True))
    )
    return dom_states_map(detector, values, STATES, title)
