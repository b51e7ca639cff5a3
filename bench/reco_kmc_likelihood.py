"""The PMT likelihood (``km3mon.reco.likelihood``) on KM3NeT's own MC: its light model fitted
and cross-validated, the single-DU refinement km3mon uses, and stop 38's multi-DU trials.

Per whole MC event (ORCA-6, KM3Sim light) and PMT: distance ρ from the true muon, cosine a of
the direct photon's angle off its axis, first hit's residual in the window (or none). The MC's
muon time is on another clock than its hits: each event's time and position across the track
are set where the tables measured on the *other* half (file index even / odd) like them best
(twice). Then, per half, the tables are either measured cell by cell (``--tables measured``,
stop 38) or ``km3mon.reco.light``'s eleven numbers fitted (``model``, default; the fit on all
events is what km3mon ships). An event is only ever scored with the other half's tables:

- **single-DU**: the cuts of each event to one DU (>= 4 triggered DOMs) through
  ``Reconstruction`` with the line fit alone, with the likelihood refinement on the other
  half's tables, and on the shipped ones (in-sample), median |Δzenith| by triggered DOMs;
- **multi-DU**: km3mon reco as shipped (its likelihood choosing between the track and the
  time fits' rival, ``Settings.alternative_starts``), the same on the other half's tables,
  and without that choice; then the trials (not adopted): every >= 3-DU track refined
  (Nelder-Mead), chosen among ``--starts`` time fits from directions spread over the
  sphere, or all of those
  refined and the best kept, or (cheaper) only the distinct ones (``DISTINCT_DEG`` apart)
  each refined briefly, the one chosen refined to the end, or only the distinct one of
  lowest time cost refined briefly against ours (no finish); medians, the paired change of
  well-fitted events' angles, events moved across 10°, CPU per track; and, for the events
  more than 10° off, whether the likelihood prefers the true direction to ours.

``--starts`` and ``--candidate-iterations``: how many spread time fits each event gets, and
how long each is. ``--arca-seconds``: the trials' CPU on simulated ARCA-230 events.

    .venv/bin/python bench/reco_kmc_likelihood.py --json bench/results/reco_kmc_likelihood.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchlib import write_json
from km3mon.daq import decode_events_hits
from km3mon.detector import Detector, calibrate_hits, parse_detx
from km3mon.reco import kmc
from km3mon.reco.fit import TRACK_DTYPE, Reconstruction, Settings
from km3mon.reco.light import KM3NET_MC_PARAMETERS, PARAMETER_NAMES, WINDOW_NS, MuonTables, tables
from km3mon.reco.likelihood import MAX_EVALUATIONS, TrackLikelihood
from km3mon.reco.model import (
    COS_CHERENKOV,
    KAPPA,
    SIN_CHERENKOV,
    SPEED_OF_LIGHT_M_NS,
    fibonacci_sphere,
    space_angle_deg,
)
from light_model import collect, fit

RHO_EDGES = np.array([0, 5, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100, 130, 250.0])
COS_EDGES = np.array([-1, -0.5, -0.2, 0.1, 0.4, 0.7, 1.0])
RESIDUAL_EDGES = np.array([-30, -15, -8, -5, -3, -2, -1, 0, 1, 2, 3, 4, 5, 7, 10, 14, 20, 30,
                           45, 65, 100, 150, 200, 300.0])  # fmt: skip
#: Background: first hits of PMTs this far from the track (no light of it arrives; the
#: tables' own bins say so), over the whole window. The detector's noise, not the muon's
#: light: measured on all events, for the half tables too (too few counts in a half).
K40_FROM_M = 100.0
#: The cheaper search: candidates at least this far apart (degrees), each refined with this
#: many evaluations before the likelihood chooses, the chosen one refined to the end.
DISTINCT_DEG = 2.0
SHORT_EVALUATIONS = 30


def first_residuals(detector: Detector, hits: np.ndarray, d, p, t0):
    """Per PMT of the detector: ρ, a, and its first hit's residual in the window (NaN)."""
    offset = detector.pmt_pos_m - p
    along = offset @ d
    across = offset - along[:, None] * d
    rho = np.sqrt(np.maximum((offset * offset).sum(axis=1) - along**2, 0.0) + 0.01)
    photon = COS_CHERENKOV * d + SIN_CHERENKOV * across / rho[:, None]
    facing = -(photon * detector.pmt_dir).sum(axis=1)
    expected = t0 + (along + KAPPA * rho) / SPEED_OF_LIGHT_M_NS
    rows = detector.pmt_rows(hits["dom_id"], hits["channel"])
    residual = hits["time_ns"] - expected[rows]
    inside = (residual >= WINDOW_NS[0]) & (residual <= WINDOW_NS[1])
    first = np.full(len(rho), np.inf)
    np.minimum.at(first, rows[inside], residual[inside])
    first[~np.isfinite(first)] = np.nan
    return rho, facing, first


def build(detector: Detector, events: list[dict], k40: float | None = None) -> MuonTables:
    """The tables of ``events`` with K40 density ``k40`` per ns per PMT (None: theirs)."""
    shape = (len(RHO_EDGES) - 1, len(COS_EDGES) - 1)
    observed = np.zeros(shape)
    counts = np.zeros((*shape, len(RESIDUAL_EDGES) - 1))
    optical = detector.n_pmts[detector.pmt_dom_index] > 1
    for event in events:
        rho, facing, first = first_residuals(detector, event["hits"], *event["track"])
        use = optical & (rho < RHO_EDGES[-1])
        i = np.clip(np.searchsorted(RHO_EDGES, rho[use]) - 1, 0, shape[0] - 1)
        j = np.clip(np.searchsorted(COS_EDGES, facing[use]) - 1, 0, shape[1] - 1)
        np.add.at(observed, (i, j), 1)
        hit = np.isfinite(first[use])
        k = np.clip(np.searchsorted(RESIDUAL_EDGES, first[use][hit]) - 1, 0, counts.shape[2] - 1)
        np.add.at(counts, (i[hit], j[hit], k), 1)
    width = np.diff(RESIDUAL_EDGES)
    # half a count spread over the window per cell: empty cells are not -inf
    density = (counts + 0.5 * width / width.sum()) / (observed[..., None] + 1.0) / width
    if k40 is None:
        far = np.searchsorted(RHO_EDGES, K40_FROM_M)
        k40 = counts[far:].sum() / observed[far:].sum() / width.sum()
    seen = counts.sum(axis=2) / np.maximum(observed, 1)
    none = np.clip(np.where(observed > 0, 1.0 - seen, 1.0), 1e-3, 1.0)
    return MuonTables(
        RHO_EDGES, COS_EDGES, RESIDUAL_EDGES, np.log(density / k40),
        np.log(none) + k40 * (WINDOW_NS[1] - WINDOW_NS[0]), float(k40),
    )  # fmt: skip


def model_parameters(detector: Detector, events: list[dict], k40: float) -> np.ndarray:
    """``km3mon.reco.light``'s numbers fitted on ``events``."""
    optical = detector.n_pmts[detector.pmt_dom_index] > 1
    samples = [tuple(x[optical] for x in first_residuals(detector, e["hits"], *e["track"]))
               for e in events]  # fmt: skip
    return fit(collect(samples), k40)


def align(detector: Detector, events: list[dict], tables: MuonTables) -> float:
    """Move each event's track across and in time (direction kept) to where ``tables`` like
    it best; returns the median move in time (ns)."""
    likelihood = TrackLikelihood(detector, tables)
    tracks = np.zeros(len(events), TRACK_DTYPE)
    for row, event in zip(tracks, events, strict=True):
        row["event"] = 0
        row["dir"], row["pos_m"], row["t_ns"] = event["track"]
    moves = []
    steps = np.array([0.0, 0.0, 3.0, 3.0, 5.0])
    for row, event in zip(tracks, events, strict=True):
        one = row.reshape(1).copy()
        likelihood.refine(one, event["hits"], steps=steps)
        moves.append(abs(one["t_ns"][0] - event["track"][2]))
        event["track"] = (one["dir"][0].copy(), one["pos_m"][0].copy(), float(one["t_ns"][0]))
    return float(np.median(moves))


def load_events(mc: kmc.MCEvents) -> tuple[Detector, list[dict]]:
    """The whole MC events: hits (calibrated, the event's own), the true track with its time
    set to the triggered hits' median residual, and the half (file index even / odd)."""
    truth = mc.arrays()
    detector = parse_detx(mc.detx_text, "KM3NeT MC")
    _, hits = decode_events_hits(mc.payloads)
    hits = calibrate_hits(detector, hits)
    hits = hits[hits["calibrated"]]
    events = []
    for e in range(len(mc.payloads)):
        mine = hits[hits["event"] == e]
        mine = mine.copy()
        mine["event"] = 0
        d, p = truth["true_dir"][e], truth["true_pos"][e]
        pos = np.column_stack([mine[f"pos_{a}_m"] for a in "xyz"])
        offset = pos - p
        along = offset @ d
        rho = np.sqrt(np.maximum((offset * offset).sum(axis=1) - along**2, 0.0))
        residual = mine["time_ns"] - (along + KAPPA * rho) / SPEED_OF_LIGHT_M_NS
        t0 = float(np.median(residual[mine["triggered"]]))
        events.append({"hits": mine, "track": (d, p, t0), "half": int(truth["file_event"][e]) % 2})
    return detector, events


def candidates(
    hits: np.ndarray, tracks: np.ndarray, n_starts: int, iterations: int = 40
) -> np.ndarray:
    """Time fits (``iterations`` each) of each track's event from ``n_starts`` directions
    spread over the sphere, on its coincident triggered hits (within 20 ns of its DOM's
    first), started at their centre and median time (TRACK_DTYPE rows, fitted ones only)."""
    from km3mon.reco import kernels

    hits = hits[hits["triggered"] & np.isin(hits["event"], tracks["event"])]
    key = hits["event"].astype(np.int64) * 10**10 + hits["dom_id"]
    hits, key = hits[np.lexsort((hits["time_ns"], key))], np.sort(key)
    first = np.r_[True, key[1:] != key[:-1]]
    first_t = hits["time_ns"][first][np.cumsum(first) - 1]
    hits = hits[hits["time_ns"] - first_t <= 20.0]
    events, first_row, counts = np.unique(hits["event"], return_index=True, return_counts=True)
    starts = fibonacci_sphere(n_starts)
    k = len(starts)
    block_counts = np.repeat(counts, k)
    inside = np.arange(block_counts.sum()) - np.repeat(np.cumsum(block_counts) - block_counts,
                                                       block_counts)  # fmt: skip
    rows = np.repeat(np.repeat(first_row, k), block_counts) + inside
    block = np.repeat(np.arange(len(block_counts)), block_counts)
    pos = np.column_stack([hits[f"pos_{a}_m"][rows] for a in "xyz"])
    times = hits["time_ns"][rows].astype(np.float64)
    centre = np.column_stack([np.bincount(block, pos[:, a]) for a in range(3)])
    centre /= block_counts[:, None]
    direction = np.tile(starts, (len(events), 1))
    value = (
        times - np.einsum("ij,ij->i", pos - centre[block], direction[block]) / SPEED_OF_LIGHT_M_NS
    )
    offsets = np.r_[0, np.cumsum(block_counts)]
    start_t = value[np.lexsort((value, block))][offsets[:-1] + block_counts // 2]
    cost = np.full(len(block_counts), np.nan)
    kernels.refit_tracks(np.ascontiguousarray(pos), times, offsets, 3.0, iterations, direction,
                         centre, start_t, cost)  # fmt: skip
    ok = np.isfinite(cost)
    out = np.zeros(int(ok.sum()), TRACK_DTYPE)
    out["event"] = np.repeat(events, k)[ok]
    out["dir"] = direction[ok] / np.linalg.norm(direction[ok], axis=1, keepdims=True)
    out["pos_m"] = centre[ok]
    out["t_ns"] = start_t[ok]
    out["cost"] = cost[ok]
    return out


def angles(tracks: np.ndarray, true_dir: np.ndarray) -> np.ndarray:
    out = np.full(len(true_dir), np.nan)
    out[tracks["event"]] = space_angle_deg(tracks["dir"], true_dir[tracks["event"]])
    return out


def compare(before: np.ndarray, after: np.ndarray) -> dict:
    """Paired: the median ratio of the angles of events within 10° both times (bootstrap
    16-84 %), and the events moved across 10°."""
    good = (before < 10) & (after < 10)
    ratio = np.log(after[good] / before[good])
    rng = np.random.default_rng(2026)
    boot = np.exp(np.median(rng.choice(ratio, (2000, len(ratio))), axis=1))
    return {"both_within_10": int(good.sum()), "median_ratio": float(np.exp(np.median(ratio))),
            "median_ratio_ci68": np.percentile(boot, [16, 84]).tolist(),
            "improved": float(np.mean(ratio < 0)),
            "into_10": int(((before >= 10) & (after < 10)).sum()),
            "out_of_10": int(((before < 10) & (after >= 10)).sum())}  # fmt: skip


def arca_cpu(seconds: float, tables: MuonTables, starts: int, iterations: int) -> dict:
    """On simulated ARCA-230 events: CPU (ms) per track of the refine stage, how many of the
    events per second are small (tried, <= ``spread_max_doms`` DOMs), and the cores the
    cheaper search (distinct candidates) would take for those and for every track."""
    from km3mon.sim.sim_geometry import synthetic_detx
    from reco_speed import simulate

    detector = parse_detx(synthetic_detx(230, t0_seed=1))
    payloads = [p for s in simulate(detector, seconds, 2) for p in s]
    _events, hits = decode_events_hits(payloads)
    hits = calibrate_hits(detector, hits)
    reconstruction = Reconstruction(detector)
    result = reconstruction.run(len(_events), hits)
    tracks = result.tracks
    snapshot = hits[hits["calibrated"]]
    stage = TrackLikelihood(detector, tables)
    stage.refine(tracks[:2].copy(), snapshot)  # compiled
    started = time.process_time()
    stage.refine(tracks.copy(), snapshot)
    out = {"refine_ms_per_track": (time.process_time() - started) / len(tracks) * 1e3,
           "events": len(_events)}  # fmt: skip
    small = result.track_tried & (result.n_doms <= reconstruction.settings.spread_max_doms)
    out["small_events_per_s"] = float(small.sum() / seconds)
    for name, mine in (("small", tracks[small[tracks["event"]]]), ("all", tracks)):
        mine = mine.copy()
        started = time.process_time()
        found = distinct(mine, candidates(hits, mine, starts, iterations), DISTINCT_DEG)
        choose(stage, mine, found, snapshot, evaluations=SHORT_EVALUATIONS, finish=True)
        spent = time.process_time() - started
        out[f"distinct_cores_{name}"] = spent / seconds
        out[f"distinct_candidates_per_track_{name}"] = len(found) / max(len(mine), 1)
    # the lowest distinct candidate only, for every track: its parts timed apart
    mine = tracks.copy()
    started = time.process_time()
    spread = candidates(hits, mine, starts, iterations)
    fitted = time.process_time()
    found = lowest_only(distinct(mine, spread, DISTINCT_DEG))
    chosen = time.process_time()
    choose(stage, mine, found, snapshot, evaluations=SHORT_EVALUATIONS)
    done = time.process_time()
    out["lowest_cores_all"] = {
        "time fits from the spread starts": (fitted - started) / seconds,
        "distinct, lowest": (chosen - fitted) / seconds,
        "likelihood: short refine, choose": (done - chosen) / seconds,
    }
    return out


def distinct(tracks: np.ndarray, candidates: np.ndarray, separation_deg: float) -> np.ndarray:
    """Of each event's candidates, lowest time cost first, those more than
    ``separation_deg`` from its track and from each one kept before (most starts end in a
    few minima)."""
    cos_max = np.cos(np.radians(separation_deg))
    kept = []
    for track in tracks:
        mine = candidates[candidates["event"] == track["event"]]
        directions = [track["dir"]]
        for row in mine[np.argsort(mine["cost"], kind="stable")]:
            if max(float(np.dot(row["dir"], d)) for d in directions) < cos_max:
                directions.append(row["dir"])
                kept.append(row)
    return np.array(kept, candidates.dtype) if kept else candidates[:0]


def lowest_only(found: np.ndarray) -> np.ndarray:
    """Of each event's distinct candidates, only the one of lowest time cost."""
    order = np.lexsort((found["cost"], found["event"]))
    ranked = found[order]
    return ranked[np.r_[True, ranked["event"][1:] != ranked["event"][:-1]]]


def choose(stage: TrackLikelihood, tracks: np.ndarray, candidates: np.ndarray,
           snapshot: np.ndarray, evaluations: int = 1, finish: bool = False) -> None:  # fmt: skip
    """Replace each track by its event's candidate (TRACK_DTYPE rows) if the likelihood
    prefers it (in place), after ``evaluations`` Nelder-Mead evaluations of every one of
    them (1: as they are); ``finish``: the chosen one then refined to the end."""
    both = np.concatenate((tracks, candidates.astype(tracks.dtype)))
    value = stage.refine(both, snapshot, max_evaluations=evaluations)[:, int(evaluations > 1)]
    value = np.where(np.isfinite(value), value, np.inf)
    order = np.lexsort((value, both["event"]))
    best = both[order[np.r_[True, both["event"][order][1:] != both["event"][order][:-1]]]]
    if finish:
        stage.refine(best, snapshot)
    row_of_event = {int(e): i for i, e in enumerate(tracks["event"])}
    for row in best:
        i = row_of_event.get(int(row["event"]))
        if i is not None:
            tracks[i] = row


def truth_preferred(stage: TrackLikelihood, tracks: np.ndarray, events: list[dict],
                    snapshot: np.ndarray) -> np.ndarray:  # fmt: skip
    """-ln L at the true direction minus at the track's, each with its position across and
    time refined (direction kept): < 0 where the likelihood prefers the truth."""
    truth = tracks.copy()
    for row in truth:
        row["dir"], row["pos_m"], row["t_ns"] = events[row["event"]]["track"]
    steps = np.array([0.0, 0.0, 3.0, 3.0, 5.0])
    at_truth = stage.refine(truth, snapshot, steps=steps)[:, 1]
    return at_truth - stage.refine(tracks.copy(), snapshot, steps=steps)[:, 1]


def single_du(detector: Detector, half_tables: list[MuonTables]) -> dict:
    """Median |Δzenith| of the single-DU cuts by triggered DOMs: the line fit alone, refined
    on the other half's tables, and on the shipped ones."""
    mc = kmc.load(single_du=True)
    truth = mc.arrays()
    _events, hits = decode_events_hits(mc.payloads)
    hits = calibrate_hits(detector, hits)
    cut = np.flatnonzero(truth["cut_du"] > 0)
    half = truth["file_event"] % 2
    triggered = hits[hits["triggered"] & hits["calibrated"]]
    keys = np.unique(triggered["event"].astype(np.int64) * 10**10 + triggered["dom_id"])
    n_doms = np.bincount(keys // 10**10, minlength=len(mc.payloads))
    true_zenith = np.degrees(np.arccos(truth["true_dir"][:, 2]))

    def errors(reconstruction: Reconstruction, events: np.ndarray) -> np.ndarray:
        lines = reconstruction.run(len(_events), hits).lines
        out = np.full(len(mc.payloads), np.nan)
        out[lines["event"]] = np.abs(np.degrees(np.arccos(lines["cos_theta"]))
                                     - true_zenith[lines["event"]])  # fmt: skip
        return out[events]

    Reconstruction(detector).warm_up()  # compiled before anything is timed
    started = time.process_time()
    variants = {"line fit alone": errors(Reconstruction(detector, Settings(
        line_likelihood_azimuths=0)), cut)}  # fmt: skip
    alone_ms = (time.process_time() - started) / len(cut) * 1e3
    crossed = np.full(len(mc.payloads), np.nan)
    for h in (0, 1):
        reconstruction = Reconstruction(detector)
        reconstruction._pmt_likelihood = TrackLikelihood(detector, half_tables[1 - h])
        mine = cut[half[cut] == h]
        crossed[mine] = errors(reconstruction, mine)
    variants["refined, other half's model"] = crossed[cut]
    started = time.process_time()
    variants["refined, shipped model (km3mon)"] = errors(Reconstruction(detector), cut)
    cpu_ms = (time.process_time() - started) / len(cut) * 1e3
    bins = {"4": (4, 4), "5": (5, 5), "6-7": (6, 7), "8-18": (8, 99)}
    print(f"\n{len(cut)} single-DU cuts (>= 4 triggered DOMs), median |Δzenith|\n")
    print("| single-DU | all | " + " | ".join(f"{b} DOMs" for b in bins)
          + " | within 10° | fitted |")  # fmt: skip
    print("|---|---:|" + "---:|" * len(bins) + "---:|---:|")
    out = {"cuts": len(cut), "cpu_ms_per_cut_shipped": cpu_ms,
           "cpu_ms_per_cut_line_fit_alone": alone_ms, "variants": {}}  # fmt: skip
    for name, error in variants.items():
        row = {"median_deg": float(np.nanmedian(error)), "within_10": float(np.mean(error < 10)),
               "fitted": float(np.mean(np.isfinite(error)))}  # fmt: skip
        for label, (lo, hi) in bins.items():
            row[label] = float(np.nanmedian(error[(n_doms[cut] >= lo) & (n_doms[cut] <= hi)]))
        out["variants"][name] = row
        print(f"| {name} | {row['median_deg']:.2f}° | "
              + " | ".join(f"{row[b]:.1f}°" for b in bins)
              + f" | {100 * row['within_10']:.0f} % | {100 * row['fitted']:.1f} % |")  # fmt: skip
    print(
        f"(whole Reconstruction.run, CPU per cut: {cpu_ms:.1f} ms with the shipped model, "
        f"{alone_ms:.1f} ms with the line fit alone; whole events included in both)"
    )
    alone, crossed = variants["line fit alone"], variants["refined, other half's model"]
    boot = np.random.default_rng(2026).choice(crossed, (2000, len(crossed)))
    out["cross_validated_median_ci68"] = np.percentile(
        np.nanmedian(boot, axis=1), [16, 84]
    ).tolist()
    out["paired"] = {"better": int((crossed < alone - 0.5).sum()),
                     "worse": int((crossed > alone + 0.5).sum()),
                     "into_10": int(((alone >= 10) & (crossed < 10)).sum()),
                     "out_of_10": int(((alone < 10) & (crossed >= 10)).sum())}  # fmt: skip
    print(f"cross-validated median, bootstrap 16-84 %: "
          f"{out['cross_validated_median_ci68'][0]:.2f}-{out['cross_validated_median_ci68'][1]:.2f}°;"
          f" against the line fit alone, cut by cut: {out['paired']['better']} better and "
          f"{out['paired']['worse']} worse by > 0.5°, {out['paired']['into_10']} into 10° and "
          f"{out['paired']['out_of_10']} out of it")  # fmt: skip
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", choices=("model", "measured"), default="model")
    parser.add_argument("--starts", type=int, default=24)
    parser.add_argument("--candidate-iterations", type=int, default=40)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--arca-seconds", type=float, default=0.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    mc = kmc.load(single_du=False)
    truth = mc.arrays()
    detector, events = load_events(mc)
    halves = [[e for e in events if e["half"] == h] for h in (0, 1)]
    k40 = build(detector, events).k40_per_ns
    for iteration in range(args.iterations):
        measured = [build(detector, half, k40) for half in halves]
        moved = [align(detector, halves[h], measured[1 - h]) for h in (0, 1)]
        print(f"alignment {iteration + 1}: median time move {moved[0]:.2f} / {moved[1]:.2f} ns")
    results: dict = {"k40_per_ns": k40, "tables": args.tables, "parameters": {}}
    print(f"K40: {k40:.3g} per ns per PMT\n\n| light model | " + " | ".join(PARAMETER_NAMES)
          + " |\n|---|" + "---:|" * len(PARAMETER_NAMES))  # fmt: skip
    fitted = {"half 0": halves[0], "half 1": halves[1], "all (fit)": events}
    for name, sample in fitted.items():
        params = model_parameters(detector, sample, k40)
        results["parameters"][name] = params.tolist()
        print(f"| {name} | " + " | ".join(f"{v:.4g}" for v in params) + " |")
    print("| shipped (km3mon.reco.light) | "
          + " | ".join(f"{v:.4g}" for v in KM3NET_MC_PARAMETERS) + " |")  # fmt: skip
    if args.tables == "model":
        half_tables = [tables(np.array(results["parameters"][f"half {h}"]), k40) for h in (0, 1)]
    else:
        half_tables = [build(detector, half, k40) for half in halves]
    results["single_du"] = single_du(detector, half_tables)

    _events, hits = decode_events_hits(mc.payloads)
    hits = calibrate_hits(detector, hits)
    snapshot = hits[hits["calibrated"]]
    base = Reconstruction(detector).run(len(_events), hits).tracks
    half = truth["file_event"] % 2
    alone = Reconstruction(detector, Settings(alternative_starts=0)).run(len(_events), hits)
    crossed = []
    for h in (0, 1):  # the likelihood's choice against the time fits, on the other half's tables
        reconstruction = Reconstruction(detector)
        reconstruction.__dict__["_pmt_likelihood"] = TrackLikelihood(detector, half_tables[1 - h])
        tracks = reconstruction.run(len(_events), hits).tracks
        crossed.append(tracks[half[tracks["event"]] == h])
    variants = {
        "km3mon reco": base,
        "km3mon reco, its choice on the other half's tables": np.concatenate(crossed),
        "km3mon reco without the choice (alternative_starts 0)": alone.tracks,
    }
    cpu = {}
    trials = ("refine", "choose", "refine and choose", "distinct: short refine, choose, finish",
              "lowest distinct only: short refine, choose")  # fmt: skip
    preferred = np.full(len(mc.payloads), np.nan)
    for h in (0, 1):
        mine = base[half[base["event"]] == h]
        stage = TrackLikelihood(detector, half_tables[1 - h])
        preferred[mine["event"]] = truth_preferred(stage, mine, events, snapshot)
    for name in trials:
        parts, spent = [], 0.0
        for h in (0, 1):
            stage = TrackLikelihood(detector, half_tables[1 - h])
            mine = base[half[base["event"]] == h].copy()
            stage.refine(mine[:1].copy(), snapshot)  # compiled
            started = time.process_time()
            if name == "refine":
                stage.refine(mine, snapshot)
            else:
                found = candidates(hits, mine, args.starts, args.candidate_iterations)
                if name == "choose":
                    choose(stage, mine, found, snapshot)
                elif name == "refine and choose":
                    choose(stage, mine, found, snapshot, evaluations=MAX_EVALUATIONS)
                elif name.startswith("distinct"):
                    found = distinct(mine, found, DISTINCT_DEG)
                    choose(stage, mine, found, snapshot, evaluations=SHORT_EVALUATIONS,
                           finish=True)  # fmt: skip
                else:
                    found = lowest_only(distinct(mine, found, DISTINCT_DEG))
                    choose(stage, mine, found, snapshot, evaluations=SHORT_EVALUATIONS)
            spent += time.process_time() - started
            parts.append(mine)
        variants[name] = np.concatenate(parts)
        cpu[name] = spent / len(base) * 1e3
    n_dus = np.array([len(np.unique(e["hits"]["du"][e["hits"]["triggered"]])) for e in events])
    multi = np.flatnonzero(n_dus >= 3)
    true_dir = truth["true_dir"]
    table = {name: angles(tracks, true_dir)[multi] for name, tracks in variants.items()}
    table["file (Jpp)"] = space_angle_deg(truth["file_dir"][multi], true_dir[multi])
    results.update({"events": len(multi), "cpu_ms_per_track": cpu, "variants": {}})
    print(f"\n{len(multi)} events with triggered hits on >= 3 DUs (stop 38's trials)\n")
    print("| fit | >= 3 DUs median | 3 DUs | 4 DUs | 5-6 DUs | within 10° | CPU per track |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, angle in table.items():
        row = {"median_deg": float(np.nanmedian(angle)), "within_10": float(np.mean(angle < 10))}
        for label, lo, hi in (("3", 3, 3), ("4", 4, 4), ("5-6", 5, 6)):
            pick = (n_dus[multi] >= lo) & (n_dus[multi] <= hi)
            row[label] = float(np.nanmedian(angle[pick]))
        results["variants"][name] = row
        spent = f"{cpu[name]:.2f} ms" if name in cpu else "–"
        print(
            f"| {name} | {row['median_deg']:.2f}° | {row['3']:.1f}° | {row['4']:.1f}° | "
            f"{row['5-6']:.2f}° | {100 * row['within_10']:.0f} % | {spent} |"
        )
    without = "km3mon reco without the choice (alternative_starts 0)"
    against = {name: "km3mon reco" for name in trials} | {
        name: without for name in list(variants)[:2]
    }
    for name, before in against.items():
        paired = compare(table[before], table[name])
        results["variants"][name]["paired"] = paired
        print(
            f"\n{name} against {before}: of {paired['both_within_10']} events within 10° "
            f"both times, median angle ratio {paired['median_ratio']:.3f} (16-84 %: "
            f"{paired['median_ratio_ci68'][0]:.3f}-{paired['median_ratio_ci68'][1]:.3f}), "
            f"{100 * paired['improved']:.0f} % improved; into 10°: {paired['into_10']}, "
            f"out of 10°: {paired['out_of_10']}"
        )
    misses = multi[table["km3mon reco"] > 10]
    results["misses_truth_preferred"] = {}
    print(f"\n>= 3-DU events more than 10° off: {len(misses)}; the likelihood (other half's) at "
          "the true direction against at ours, position and time refined for each:")  # fmt: skip
    for label, lo, hi in (("3", 3, 3), ("4", 4, 4), ("5-6", 5, 6), ("all", 3, 99)):
        pick = misses[(n_dus[misses] >= lo) & (n_dus[misses] <= hi)]
        better = int((preferred[pick] < 0).sum())
        results["misses_truth_preferred"][label] = {
            "misses": len(pick), "truth_preferred": better,
            "median_delta": float(np.nanmedian(preferred[pick])) if len(pick) else None,
        }  # fmt: skip
        print(f"- {label} DUs: {len(pick)} misses, the truth preferred in {better}, median "
              f"-ln L(truth) - (-ln L(ours)) {np.nanmedian(preferred[pick]):.1f}")  # fmt: skip
    if args.arca_seconds:
        arca = arca_cpu(args.arca_seconds, half_tables[0], args.starts, args.candidate_iterations)
        results["arca230"] = arca
        per_event = (1 + args.starts) * arca["refine_ms_per_track"]
        print(
            f"\nrefine on ARCA-230 simulated events: {arca['refine_ms_per_track']:.2f} ms CPU per "
            f"track; {arca['small_events_per_s']:.0f} events/s with <= spread_max_doms DOMs "
            f"({arca['events']} events in {args.arca_seconds:g} s): refine and choose for them "
            f"~{per_event * arca['small_events_per_s'] / 1e3:.1f} cores; the cheaper search "
            f"(distinct candidates, timed whole) {arca['distinct_cores_small']:.2f} cores for "
            f"them ({arca['distinct_candidates_per_track_small']:.1f} candidates per track), "
            f"{arca['distinct_cores_all']:.2f} cores for every track "
            f"({arca['distinct_candidates_per_track_all']:.1f} per track); the lowest "
            "distinct candidate only, every track: "
            + ", ".join(f"{k} {v:.2f}" for k, v in arca["lowest_cores_all"].items())
            + " cores"
        )
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
