"""Fit speed of ``km3mon reco`` at ARCA-230, beside a per-event yardstick.

Events from the simulator at 230 DUs (synthetic DETX, realistic t0s; 470 Hz, the trigger
rate of ``km3mon simulate`` at 230 DUs) go through the monitor's path: decode, calibrate,
batched fits (numba). Measured:

- **live**: the events of each 100 ms timeslice are handed over when due in wall time, as
  the ligier would; CPU per wall second (cores) and the lag (fits done minus data due);
- **fits per CPU-second** on the same events, with the leave-one-DOM-out refits of the
  time-offset monitor and without them, and a digest of the fits and residuals (the same
  digest from two versions of km3mon: the same fits);
- **the PMT likelihood's share**: the CPU of the refinement of the single-DU fits of events
  without a track, timed around each call on the same events;
- **the yardstick**, the same work the plain way: per event, the same hit selection and
  direction scan in numpy, then ``scipy.optimize.least_squares`` (soft-L1 loss, same sigma)
  from the same number of starts for the track and for each single-DU fit; fits per
  CPU-second on a subset, and how far its directions are from ours (same minimum?).

    .venv/bin/python bench/reco_speed.py                     # 60 s live, 300 yardstick events
    .venv/bin/python bench/reco_speed.py --live-seconds 20 --yardstick-events 100
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from benchlib import write_results
from km3mon.controlhost import FrameDecoder
from km3mon.daq import decode_events_hits
from km3mon.detector import Detector, calibrate_hits, parse_detx
from km3mon.reco.fit import Reconstruction, Settings, cone_offsets
from km3mon.reco.model import (
    KAPPA,
    SPEED_OF_LIGHT_M_NS,
    fibonacci_sphere,
    line_time_ns,
    perpendicular_basis,
    space_angle_deg,
)
from km3mon.sim.sim_geometry import synthetic_detx
from km3mon.sim.simulator import Simulator

C = SPEED_OF_LIGHT_M_NS


def simulate(detector: Detector, seconds: float, seed: int) -> list[list[bytes]]:
    """IO_EVT payloads per 100 ms timeslice."""
    simulator = Simulator(detector, seed=seed, start_utc_s=1.7e9)
    slices = []
    for _ in range(round(seconds * 10)):
        frames = FrameDecoder().feed(simulator.step().data)
        slices.append([m.payload for m in frames if m.tag == "IO_EVT"])
    return slices


def fit_payloads(reconstruction: Reconstruction, detector: Detector, payloads: list[bytes]):
    events, hits = decode_events_hits(payloads)
    hits = calibrate_hits(detector, hits)  # snapshot hits too, as the monitor does
    return reconstruction.run(len(events), hits), hits


def live(reconstruction: Reconstruction, detector: Detector, slices: list[list[bytes]]) -> dict:
    """Hand each timeslice over when it is due in wall time; CPU and lag."""
    lags = []
    started = time.monotonic()
    cpu_start = time.process_time()
    for k, payloads in enumerate(slices):
        due = started + (k + 1) * 0.1
        time.sleep(max(0.0, due - time.monotonic()))
        if payloads:
            fit_payloads(reconstruction, detector, payloads)
        lags.append(time.monotonic() - due)
    wall_s = time.monotonic() - started
    return {
        "events_hz": sum(map(len, slices)) / (len(slices) * 0.1),
        "cpu_cores": (time.process_time() - cpu_start) / wall_s,
        "lag_median_s": float(np.median(lags)),
        "lag_max_s": float(np.max(lags)),
    }


def throughput(reconstruction: Reconstruction, detector: Detector, payloads: list[bytes]) -> dict:
    """Events and fits per CPU-second, in batches of a timeslice's worth of events."""
    batch = 47
    cpu_start = time.process_time()
    n_tracks = n_lines = 0
    results = []
    for first in range(0, len(payloads), batch):
        result, _ = fit_payloads(reconstruction, detector, payloads[first : first + batch])
        n_tracks += len(result.tracks)
        n_lines += len(result.lines)
        results.append(result)
    cpu_s = time.process_time() - cpu_start
    digest = hashlib.sha256()  # after the clock: same digest, same fits (across versions)
    for result in results:
        for table in (result.tracks, result.lines, result.dom_residuals, result.line_residuals):
            digest.update(table.tobytes())
    return {
        "fits_digest": digest.hexdigest()[:16],
        "events": len(payloads),
        "cpu_s": cpu_s,
        "events_per_cpu_s": len(payloads) / cpu_s,
        "fits_per_cpu_s": (n_tracks + n_lines) / cpu_s,
        "multi_du_fits": n_tracks,
        "single_du_fits": n_lines,
    }


def pmt_likelihood_share(detector: Detector, payloads: list[bytes]) -> dict:
    """CPU spent in the PMT likelihood's refinement of the single-DU fits of events without
    a track (``Reconstruction._refine_lines``, timed around each call), batch by batch."""
    reconstruction = Reconstruction(detector)
    reconstruction.warm_up()
    refine, spent = reconstruction._refine_lines, [0.0]

    def timed(*args) -> None:
        started = time.process_time()
        refine(*args)
        spent[0] += time.process_time() - started

    reconstruction._refine_lines = timed
    refined = 0
    for first in range(0, len(payloads), 47):
        result, _ = fit_payloads(reconstruction, detector, payloads[first : first + 47])
        refined += int((~np.isin(result.lines["event"], result.tracks["event"])).sum())
    return {"cpu_s": spent[0], "refined_lines": refined}


# --- the yardstick: per event, numpy scan + scipy.optimize.least_squares ------------------


def scan_numpy(pos: np.ndarray, t: np.ndarray, lnrho: np.ndarray, directions: np.ndarray,
               sigma_ns: float, sigma_ln: float):  # fmt: skip
    """The linear estimator of every direction at once (numpy, one event); costs and
    (c t0, x, y) per direction."""
    e1, e2 = perpendicular_basis(directions)
    zp, xp, yp = pos @ directions.T, pos @ e1.T, pos @ e2.T  # (hits, directions)
    w = C * t[:, None] - zp
    q = w * w - KAPPA**2 * (xp * xp + yp * yp)
    centred = [v - v.mean(axis=0) for v in (w, xp, yp, q)]
    cw, cx, cy, cq = centred
    matrix = np.stack(
        [np.stack([np.sum(cw * cw, 0), -np.sum(cw * cx, 0), -np.sum(cw * cy, 0)], -1),
         np.stack([-np.sum(cw * cx, 0), np.sum(cx * cx, 0), np.sum(cx * cy, 0)], -1),
         np.stack([-np.sum(cw * cy, 0), np.sum(cx * cy, 0), np.sum(cy * cy, 0)], -1)], -2,
    )  # fmt: skip
    rhs = np.stack([0.5 * np.sum(cq * cw, 0), -0.5 * np.sum(cq * cx, 0),
                    -0.5 * np.sum(cq * cy, 0)], -1)  # fmt: skip
    solvable = np.abs(np.linalg.det(matrix)) > 1e-300
    solution = np.zeros_like(rhs)
    solution[solvable] = np.linalg.solve(matrix[solvable], rhs[solvable][..., None])[..., 0]
    ct0, x, y = solution[:, 0], solution[:, 1] / KAPPA**2, solution[:, 2] / KAPPA**2
    distance = np.sqrt((xp - x) ** 2 + (yp - y) ** 2 + 0.01)
    r = t[:, None] - (ct0 + zp + KAPPA * distance) / C
    cost = np.sum(2 * (np.sqrt(1 + (r / sigma_ns) ** 2) - 1), 0)
    distance_terms = 2 * (np.sqrt(1 + ((lnrho[:, None] - np.log(distance)) / sigma_ln) ** 2) - 1)
    cost += np.nansum(distance_terms, 0)  # NaN: the distance prior is off
    cost[~solvable] = np.inf
    return cost, ct0, x, y


def track_residuals(params, pos, t, lnrho, first, sigma_ns, sigma_ln):
    theta, phi, x0, y0, t0 = params
    d = np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)])
    e1, e2 = perpendicular_basis(d[None])
    p = x0 * e1[0] + y0 * e2[0]
    offset = pos - p
    along = offset @ d
    rho = np.sqrt(np.maximum(np.sum(offset**2, 1) - along**2, 0) + 0.01)
    time_res = (t - t0 - (along + KAPPA * rho) / C) / sigma_ns
    with_prior = first & np.isfinite(lnrho)
    distance_res = (lnrho[with_prior] - np.log(rho[with_prior])) / sigma_ln
    return np.concatenate((time_res, distance_res))


def yardstick_event(pos, t, lnrho, first, directions, cone, settings: Settings) -> np.ndarray:
    """One event the plain way; returns the fitted direction."""
    centre = pos.mean(axis=0)
    pos = pos - centre
    t = t - t.min()
    cost, *_ = scan_numpy(pos[first], t[first], lnrho[first], directions,
                          settings.sigma_coarse_ns, settings.sigma_ln_distance)  # fmt: skip
    best = directions[np.argsort(cost)[: settings.n_best]]
    fine = []
    for d in best:
        e1, e2 = perpendicular_basis(d[None])
        around = d + cone[:, :1] * e1 + cone[:, 1:] * e2
        fine.append(around / np.linalg.norm(around, axis=1, keepdims=True))
    fine = np.concatenate(fine)
    cost, ct0, x, y = scan_numpy(pos[first], t[first], lnrho[first], fine,
                                 settings.sigma_fine_ns, settings.sigma_ln_distance)  # fmt: skip
    order = np.argsort(cost)
    chosen: list[int] = []
    for i in order:
        if all(fine[i] @ fine[j] < np.cos(np.radians(settings.start_separation_deg))
               for j in chosen):  # fmt: skip
            chosen.append(int(i))
        if len(chosen) == settings.n_starts:
            break
    best_cost, best_dir = np.inf, fine[order[0]]
    for i in chosen:
        d = fine[i]
        start = [np.arccos(np.clip(d[2], -1, 1)), np.arctan2(d[1], d[0]), x[i], y[i], ct0[i] / C]
        fit = least_squares(track_residuals, start, loss="soft_l1", f_scale=1.0,
                            args=(pos, t, lnrho, first, settings.sigma_ns,
                                  settings.sigma_ln_distance))  # fmt: skip
        if fit.cost < best_cost:
            theta, phi = fit.x[:2]
            best_cost = fit.cost
            best_dir = np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi),
                                 np.cos(theta)])  # fmt: skip
    return best_dir


def line_residuals(q, z, t, sigma_ns):
    return (t - line_time_ns(z, q[0], q[1], np.cos(q[2]), q[3])) / sigma_ns


def yardstick(detector: Detector, payloads: list[bytes], ours: Reconstruction) -> dict:
    """The yardstick on ``payloads``: fits per CPU-second, and agreement with our fits."""
    settings = ours.settings
    directions = fibonacci_sphere(settings.coarse_directions)
    cone = cone_offsets(settings.cone_deg)
    result, hits = fit_payloads(ours, detector, payloads)  # ours, for the comparison
    ours_dir = {int(e): d for e, d in zip(result.tracks["event"], result.tracks["dir"],
                                          strict=True)}  # fmt: skip
    cpu_start = time.process_time()
    angles, n_fits = [], 0
    hits = hits[hits["calibrated"] & hits["triggered"]]
    dom = detector.dom_index(hits["dom_id"])
    for e in np.unique(hits["event"]).tolist():
        mine = hits["event"] == e
        h, d = hits[mine], dom[mine]
        order = np.lexsort((h["time_ns"], d))
        h, d = h[order], d[order]
        first = np.r_[True, d[1:] != d[:-1]]
        group = np.cumsum(first) - 1
        keep = h["time_ns"] - h["time_ns"][first][group] <= settings.coincidence_ns
        multiplicity = np.bincount(group[keep])
        h, first, group = h[keep], first[keep], group[keep]
        lnrho = (
            np.full(len(group), np.nan)
            if settings.distance_per_hit_m is None
            else np.log(settings.distance_per_hit_m / multiplicity[group])
        )
        pos = np.column_stack((h["pos_x_m"], h["pos_y_m"], h["pos_z_m"]))
        t = np.asarray(h["time_ns"], float)
        n_dus = len(np.unique(h["du"]))
        if n_dus >= 2 and first.sum() >= settings.min_track_doms:
            direction = yardstick_event(pos, t, lnrho, first, directions, cone, settings)
            n_fits += 1
            if e in ours_dir:
                angles.append(space_angle_deg(direction[None], ours_dir[e][None])[0])
        for du in np.unique(h["du"][first]).tolist():
            on_du = first & (h["du"] == du)
            if on_du.sum() < settings.min_line_floors:
                continue
            z, tt = pos[on_du, 2], t[on_du] - t[on_du].min()
            best = None
            for theta in np.radians([150.0, 120.0, 90.0, 60.0, 30.0]):
                start = [15.0, z[np.argmin(tt)], theta, -KAPPA * 15.0 / C]
                fit = least_squares(line_residuals, start, loss="soft_l1",
                                    args=(z, tt, settings.sigma_ns))  # fmt: skip
                best = fit if best is None or fit.cost < best.cost else best
            n_fits += 1
    cpu_s = time.process_time() - cpu_start
    return {
        "events": len(payloads),
        "cpu_s": cpu_s,
        "events_per_cpu_s": len(payloads) / cpu_s,
        "fits_per_cpu_s": n_fits / cpu_s,
        "median_angle_to_ours_deg": float(np.median(angles)) if angles else None,
        "angle_to_ours_above_1deg": float(np.mean(np.array(angles) > 1.0)) if angles else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dus", type=int, default=230)
    parser.add_argument("--live-seconds", type=float, default=60.0)
    parser.add_argument("--yardstick-events", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the numbers here as JSON too")
    args = parser.parse_args()
    detector = parse_detx(synthetic_detx(args.dus, t0_seed=1))
    slices = simulate(detector, args.live_seconds, args.seed)
    payloads = [p for s in slices for p in s]
    with_loo = Reconstruction(detector)
    without_loo = Reconstruction(detector, Settings(min_loo_doms=1_000_000))
    for reconstruction in (with_loo, without_loo):
        reconstruction.warm_up()
    results = {
        "dus": args.dus,
        "live": live(with_loo, detector, slices),
        "ours": throughput(with_loo, detector, payloads),
        "ours_without_loo": throughput(without_loo, detector, payloads),
        "yardstick": yardstick(detector, payloads[: args.yardstick_events], without_loo),
        "pmt_likelihood": pmt_likelihood_share(detector, payloads),
    }
    ours, plain, yard = results["ours"], results["ours_without_loo"], results["yardstick"]
    live_row = results["live"]
    print(
        f"### Fit speed at {args.dus} DUs ({live_row['events_hz']:.0f} events/s simulated)\n\n"
        "| | events / CPU-s | fits / CPU-s | cores at this rate |\n|---|---:|---:|---:|\n"
        f"| km3mon reco (batched numba, with leave-one-DOM-out refits) | "
        f"{ours['events_per_cpu_s']:.0f} | {ours['fits_per_cpu_s']:.0f} | "
        f"{live_row['events_hz'] / ours['events_per_cpu_s']:.3f} |\n"
        f"| km3mon reco without the leave-one-DOM-out refits | "
        f"{plain['events_per_cpu_s']:.0f} | {plain['fits_per_cpu_s']:.0f} | "
        f"{live_row['events_hz'] / plain['events_per_cpu_s']:.3f} |\n"
        f"| yardstick: per event numpy scan + scipy least_squares ({yard['events']} events) | "
        f"{yard['events_per_cpu_s']:.1f} | {yard['fits_per_cpu_s']:.1f} | "
        f"{live_row['events_hz'] / yard['events_per_cpu_s']:.1f} |\n\n"
        f"Equal work (no leave-one-DOM-out): {plain['fits_per_cpu_s'] / yard['fits_per_cpu_s']:.0f}"
        f"x the yardstick's fits per CPU-second. Live, timeslices handed over when due: "
        f"{live_row['cpu_cores']:.3f} cores, lag median {live_row['lag_median_s'] * 1e3:.0f} ms, "
        f"max {live_row['lag_max_s'] * 1e3:.0f} ms. Yardstick vs ours: median "
        f"{yard['median_angle_to_ours_deg']:.3f}° apart, "
        f"{100 * yard['angle_to_ours_above_1deg']:.1f} % more than 1° apart. Digest of our "
        f"fits and residuals: {ours['fits_digest']} (with the leave-one-DOM-out refits), "
        f"{plain['fits_digest']} (without)."
    )
    share, seconds = results["pmt_likelihood"], args.live_seconds
    print(
        f"\nThe PMT likelihood's single-DU refinement: {share['refined_lines']} lines of events "
        f"without a track in {seconds:g} s, {share['cpu_s']:.2f} s CPU: "
        f"{share['cpu_s'] / seconds:.4f} cores, "
        f"{share['cpu_s'] / max(share['refined_lines'], 1) * 1e3:.1f} ms per refined line."
    )
    write_results(args, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
