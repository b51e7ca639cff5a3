"""How well ``km3mon reco``'s fits find the simulated muons: resolution and efficiency.

Simulated events (``km3mon.sim``, in-process, fixed seed) at ARCA-21 (the real DETX, t0
~480 µs) and at 230 DUs (synthetic DETX with realistic t0s), fitted exactly as the monitor
does (triggered and snapshot hits), compared with the simulator's truth:

- multi-DU fits: median space angle to the true direction (and the share more than 10° off),
  for >= 3 DUs and for 2 DUs (for
  2 DUs also to the nearer of the truth and its mirror image across the plane of the two
  DUs, and how often the mirror was picked);
- single-DU fits: median |Δ zenith|;
- fit efficiency: events with a multi-DU fit / events with triggered hits on >= 3 DUs and
  >= 15 triggered hits (the goal: >= 95 %), and per bin;
- all of them against the number of DUs and of triggered hits.

    .venv/bin/python bench/reco_resolution.py                     # both detectors, 300 s each
    .venv/bin/python bench/reco_resolution.py --seconds 60 --json bench/results/reco_res.json
    .venv/bin/python bench/reco_resolution.py --alternative-starts 0   # without the choice
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import km3net_testdata
import numpy as np

from benchlib import write_results
from km3mon.controlhost import FrameDecoder
from km3mon.daq import decode_events_hits
from km3mon.detector import Detector, calibrate_hits, parse_detx, read_detx
from km3mon.reco.fit import Reconstruction, Settings
from km3mon.reco.model import space_angle_deg, zenith_deg
from km3mon.sim.sim_geometry import synthetic_detx
from km3mon.sim.simulator import Simulator

SLICES_PER_CHUNK = 50
DU_BINS = ((2, 2), (3, 4), (5, 8), (9, 16), (17, 10_000))
HIT_BINS = ((5, 14), (15, 29), (30, 59), (60, 119), (120, 100_000))
DOM_BINS = ((4, 5), (6, 7), (8, 11), (12, 19), (20, 100_000))


def detectors(names: list[str]) -> dict[str, Detector]:
    known = {
        "ARCA-21": lambda: read_detx(
            km3net_testdata.data_path("detx/KM3NeT_00000133_20221025.detx")
        ),
        "ARCA-230": lambda: parse_detx(synthetic_detx(230, t0_seed=1)),
        "ORCA-6": lambda: read_detx(km3net_testdata.data_path("detx/detx_v5.detx")),
    }
    return {name: known[name]() for name in names}


def simulate_and_fit(
    detector: Detector,
    seconds: float,
    seed: int,
    upgoing_fraction: float = 0.0,
    settings: Settings | None = None,
) -> dict[str, np.ndarray]:
    """Per event: truth, counts and the fits, over ``seconds`` of simulated data."""
    simulator = Simulator(detector, seed=seed, start_utc_s=1.7e9, upgoing_fraction=upgoing_fraction)
    reconstruction = Reconstruction(detector, settings)
    reconstruction.warm_up()
    line_fit_alone = Reconstruction(detector, Settings(line_likelihood_azimuths=0))
    truth: list = []
    simulator.on_event = lambda header, counter, event: truth.append(event)
    columns: dict[str, list] = {name: [] for name in (
        "true_dir", "n_dus", "n_doms", "n_hits", "fitted", "dir", "track_dus", "mirror_dir",
        "line_error", "line_hits", "n_muons", "cut_error", "cut_error_alone",
    )}  # fmt: skip
    n_chunks = max(1, round(seconds * 10 / SLICES_PER_CHUNK))
    cpu_s = 0.0
    for _ in range(n_chunks):
        first = len(truth)
        data = b"".join(simulator.step().data for _ in range(SLICES_PER_CHUNK))
        payloads = [m.payload for m in FrameDecoder().feed(data) if m.tag == "IO_EVT"]
        events, hits = decode_events_hits(payloads)
        started = time.process_time()
        raw = hits
        hits = calibrate_hits(detector, raw)  # snapshot hits too, as the monitor has them
        result = reconstruction.run(len(events), hits)
        cpu_s += time.process_time() - started
        hits = hits[hits["triggered"]]
        true_dir = np.array([e.track_direction for e in truth[first:]])
        cut_hits, source = du_cuts(calibrate_hits(detector, raw))
        for name, fitter in (("cut_error", reconstruction), ("cut_error_alone", line_fit_alone)):
            lines = fitter.run(len(source), cut_hits).lines
            cut_true = true_dir[source[lines["event"]], 2]
            lines, cut_true = lines[np.isfinite(cut_true)], cut_true[np.isfinite(cut_true)]
            columns[name].append(np.abs(zenith_deg(lines["cos_theta"]) - zenith_deg(cut_true)))
        columns["n_muons"].append(np.array([e.n_muons for e in truth[first:]]))
        fitted = np.zeros(len(events), bool)
        fitted[result.tracks["event"]] = True
        direction = np.full((len(events), 3), np.nan)
        direction[result.tracks["event"]] = result.tracks["dir"]
        columns["true_dir"].append(true_dir)
        columns["n_dus"].append(result.n_dus)
        columns["n_doms"].append(result.n_doms)
        columns["n_hits"].append(result.n_hits)
        columns["fitted"].append(fitted)
        columns["dir"].append(direction)
        columns["mirror_dir"].append(mirror_truth(reconstruction, hits, result, true_dir))
        lines = result.lines[np.isfinite(true_dir[result.lines["event"], 2])]
        columns["line_error"].append(
            np.abs(zenith_deg(lines["cos_theta"]) - zenith_deg(true_dir[lines["event"], 2]))
        )
        columns["line_hits"].append(lines["n_hits"])
    out = {name: np.concatenate(parts) for name, parts in columns.items() if name != "track_dus"}
    out["cpu_s"] = np.array(cpu_s)
    return out


def du_cuts(hits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every event cut to each DU with triggered hits on >= 4 DOMs (all its hits on that DU,
    as ``kmc``'s single-DU cuts): the hits, renumbered, and each cut's source event."""
    key = hits["event"].astype(np.int64) * 10_000 + hits["du"]
    triggered = hits["triggered"]
    pairs = np.unique(np.stack((key[triggered], hits["dom_id"][triggered].astype(np.int64))),
                      axis=1)  # fmt: skip
    keys, n_doms = np.unique(pairs[0], return_counts=True)
    keys = keys[n_doms >= 4]
    cut = np.isin(key, keys)
    out = hits[cut].copy()
    out["event"] = np.searchsorted(keys, key[cut])
    return out, keys // 10_000


def mirror_truth(reconstruction: Reconstruction, hits, result, true_dir) -> np.ndarray:
    """The true direction mirrored across the vertical plane of the event's two DUs (NaN
    for events on another number of DUs)."""
    mirrored = np.full_like(true_dir, np.nan)
    two = np.flatnonzero(result.n_dus == 2)
    for e in two.tolist():
        dus = np.unique(hits["du"][hits["event"] == e])
        if len(dus) != 2:
            continue
        a, b = reconstruction.du_axis(dus)
        along = b - a
        normal = np.array([-along[1], along[0], 0.0]) / np.hypot(*along)
        mirrored[e] = true_dir[e] - 2 * (true_dir[e] @ normal) * normal
    return mirrored


def median(values: np.ndarray) -> float | None:
    return float(np.median(values)) if len(values) else None


def analyse(data: dict[str, np.ndarray]) -> dict:
    """Resolution and efficiency over the muon events; K40-only events (no muon, NaN truth)
    counted apart, with how many of them got a track anyway."""
    noise = data["n_muons"] == 0
    k40 = {"k40_events": int(noise.sum()), "k40_fitted": int((noise & data["fitted"]).sum())}
    per_event = ("true_dir", "n_dus", "n_doms", "n_hits", "fitted", "dir", "mirror_dir", "n_muons")
    data = data | {name: data[name][~noise] for name in per_event}
    fitted = data["fitted"]
    angle = np.full(len(fitted), np.nan)
    angle[fitted] = space_angle_deg(data["dir"][fitted], data["true_dir"][fitted])
    mirror_angle = np.full(len(fitted), np.nan)
    has_mirror = fitted & np.isfinite(data["mirror_dir"][:, 0])
    mirror_angle[has_mirror] = space_angle_deg(
        data["dir"][has_mirror], data["mirror_dir"][has_mirror]
    )
    n_dus, n_hits, n_doms = data["n_dus"], data["n_hits"], data["n_doms"]
    three = fitted & (n_dus >= 3)
    two = fitted & (n_dus == 2)
    wanted = (n_dus >= 3) & (n_hits >= 15)

    def row(mask: np.ndarray) -> dict:
        tried = mask & (n_dus >= 2)
        return {
            "events": int(mask.sum()),
            "efficiency": float(fitted[tried].mean()) if tried.any() else None,
            "median_angle_deg": median(angle[mask & fitted]),
            "angle_68_deg": float(np.percentile(angle[mask & fitted], 68))
            if (mask & fitted).any()
            else None,
            "beyond_10_deg": float(np.mean(angle[mask & fitted] > 10.0))
            if (mask & fitted).any()
            else None,
        }

    return k40 | {
        "events": len(fitted),
        "bundles": int((data["n_muons"] > 1).sum()),
        "fit_cpu_ms_per_event": 1e3 * float(data["cpu_s"]) / max(len(fitted), 1),
        "median_angle_3dus_deg": median(angle[three]),
        "median_angle_2dus_deg": median(angle[two]),
        "median_angle_2dus_either_mirror_deg": median(
            np.fmin(angle[two & has_mirror], mirror_angle[two & has_mirror])
        ),
        "mirror_picked_2dus": float(
            np.mean(mirror_angle[two & has_mirror] < angle[two & has_mirror])
        )
        if (two & has_mirror).any()
        else None,
        "median_zenith_error_1du_deg": median(data["line_error"]),
        "single_du_cuts": len(data["cut_error"]),
        "median_zenith_error_cuts_deg": median(data["cut_error"]),
        "median_zenith_error_cuts_line_fit_alone_deg": median(data["cut_error_alone"]),
        "single_du_fits": len(data["line_error"]),
        "efficiency_3dus_15hits": float(fitted[wanted].mean()) if wanted.any() else None,
        "events_3dus_15hits": int(wanted.sum()),
        "by_dus": {f"{lo}-{hi}": row((n_dus >= lo) & (n_dus <= hi)) for lo, hi in DU_BINS},
        "by_hits_3dus": {
            f"{lo}-{hi}": row((n_hits >= lo) & (n_hits <= hi) & (n_dus >= 3)) for lo, hi in HIT_BINS
        },
        "by_doms_3dus": {
            f"{lo}-{hi}": row((n_doms >= lo) & (n_doms <= hi) & (n_dus >= 3)) for lo, hi in DOM_BINS
        },
        "single_du_by_floors": {
            f"{lo}-{hi}": median(
                data["line_error"][(data["line_hits"] >= lo) & (data["line_hits"] <= hi)]
            )
            for lo, hi in ((5, 5), (6, 7), (8, 18))
        },
    }


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(name: str, seconds: float, result: dict) -> str:
    lines = [
        f"### {name}: {result['events']} muon events ({seconds:g} s simulated), fit CPU "
        f"{result['fit_cpu_ms_per_event']:.2f} ms/event",
        "",
        f"- {result['bundles']} of the muon events are bundles; {result['k40_events']} K40-only "
        f"events besides, {result['k40_fitted']} of them given a multi-DU track",
        f"- multi-DU, >= 3 DUs: median space angle **{fmt(result['median_angle_3dus_deg'])}°**",
        f"- multi-DU, 2 DUs: median space angle {fmt(result['median_angle_2dus_deg'])}°; to the "
        f"truth or its mirror image {fmt(result['median_angle_2dus_either_mirror_deg'])}°; "
        f"mirror picked in {fmt(100 * (result['mirror_picked_2dus'] or 0), 0)} %",
        f"- single-DU: median |Δ zenith| {fmt(result['median_zenith_error_1du_deg'])}° "
        f"({result['single_du_fits']} fits; by floors used: "
        + ", ".join(f"{k}: {fmt(v)}°" for k, v in result["single_du_by_floors"].items())
        + ")",
        f"- single-DU cuts (each event cut to each DU with >= 4 triggered DOMs, no track): "
        f"median |Δ zenith| {fmt(result['median_zenith_error_cuts_deg'])}°, line fit alone "
        f"{fmt(result['median_zenith_error_cuts_line_fit_alone_deg'])}° "
        f"({result['single_du_cuts']} fitted)",
        f"- efficiency, >= 3 DUs and >= 15 triggered hits: "
        f"**{fmt(100 * (result['efficiency_3dus_15hits'] or 0), 1)} %** of "
        f"{result['events_3dus_15hits']} events",
        "",
    ]
    for title, key in (
        ("DUs with triggered hits", "by_dus"),
        ("triggered hits (>= 3 DUs)", "by_hits_3dus"),
        ("DOMs with triggered hits (>= 3 DUs)", "by_doms_3dus"),
    ):
        lines += [
            f"| {title} | events | multi-DU fitted | median angle [°] | 68 % [°] | > 10° |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for label, row in result[key].items():
            eff = "-" if row["efficiency"] is None else f"{100 * row['efficiency']:.1f} %"
            beyond = "-" if row["beyond_10_deg"] is None else f"{100 * row['beyond_10_deg']:.1f} %"
            lines.append(
                f"| {label} | {row['events']} | {eff} | {fmt(row['median_angle_deg'])} | "
                f"{fmt(row['angle_68_deg'])} | {beyond} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detectors", nargs="+", default=["ARCA-21", "ARCA-230"])
    parser.add_argument("--seconds", type=float, default=300.0, help="simulated seconds each")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--upgoing-fraction", type=float, default=0.0, help="share of upgoing muon events"
    )
    parser.add_argument(
        "--alternative-starts",
        type=int,
        default=Settings.alternative_starts,
        help="Settings.alternative_starts (0: no PMT-likelihood choice against the time fits)",
    )
    parser.add_argument("--json", type=Path, help="write the numbers here as JSON too")
    args = parser.parse_args()
    settings = Settings(alternative_starts=args.alternative_starts)
    results = {}
    for name, detector in detectors(args.detectors).items():
        data = simulate_and_fit(detector, args.seconds, args.seed, args.upgoing_fraction, settings)
        results[name] = analyse(data)
        print(report(name, args.seconds, results[name]), flush=True)
    write_results(args, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
