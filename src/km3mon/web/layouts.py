"""Which plots each page shows: rows of plot names (``*`` is expanded by ``tiles``).

The defaults are the original km3mon's pages.
"""

from __future__ import annotations

from dataclasses import dataclass

Rows = list[list[str]]


@dataclass(frozen=True)
class Page:
    slug: str
    title: str
    rows: Rows
    note: str = ""


DEFAULT_PAGES: tuple[Page, ...] = (
    Page(
        "index",
        "Overview",
        [
            ["dom_activity", "dom_rates"],
            ["pmt_rates_du*"],
            ["trigger_rates"],
            ["ztplot", "triggermap"],
        ],
    ),
    Page(
        "compact",
        "Compact",
        [
            ["dom_activity", "dom_rates"],
            ["trigger_rates", "trigger_rates_lin"],
            ["ztplot", "triggermap"],
        ],
    ),
    Page("trigger", "Trigger", [["trigger_rates"], ["trigger_rates_lin"], ["hitmap"]]),
    Page("pmt", "PMT", [["pmt_rates_du*"], ["pmt_hrv_du*"]]),
    Page("ahrs", "AHRS", [["yaw_calib_du*"], ["pitch_calib_du*"], ["roll_calib_du*"]]),
    Page(
        "rttc",
        "RTTC",
        [["rttc"]],
        "Cable round-trip time of each DU's base CLB. RTTC = wr_mu − (TX slave + RX slave + TX "
        "master + RX master); the red line is the median of the past 24 hours, the band its "
        "robust spread.",
    ),
    Page(
        "k40",
        "K40",
        [["k40_summary"], ["intradom"], ["angular_k40rate_distribution"], ["k40_du*"]],
        "K40 intra-DOM calibration (km3mon k40, IO_TSL1). intradom: mean Δt of each PMT pair "
        "vs the cosine of their angle; angular: pair rates; blue before, red after correction.",
    ),
    Page("reco", "Reco", [["time_residuals", "ztplot_roy"], ["reco_zenith"]]),
    Page(
        "sn",
        "SN",
        [["sn_bg_histogram", "sn_pk_history"]],
        "A supernova monitor (km3mon sn), not the KM3NeT supernova trigger: coincidences of "
        "7-11 PMTs on a DOM within 10 ns, muons vetoed, summed over the detector in 0.5 s.",
    ),
    Page(
        "timesync",
        "Time sync",
        [["timesync"]],
        "Time synchronisation of every DOM (km3mon timesync, IO_TSSN): White Rabbit lost, "
        "incomplete UDP data or no frames; the same DOMs are named in ALERT lines of the DAQ log.",
    ),
)


def configured_pages(layouts: dict[str, list[list[str]]]) -> tuple[Page, ...]:
    """The default pages with rows replaced, and new pages added, from ``[Layouts]``."""
    pages = {page.slug: page for page in DEFAULT_PAGES}
    for slug, rows in layouts.items():
        old = pages.get(slug)
        title = old.title if old else slug.replace("_", " ").title()
        pages[slug] = Page(slug, title, rows, old.note if old else "")
    return tuple(pages.values())
