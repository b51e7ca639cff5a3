"""``km3mon reco`` on KM3NeT's own Monte Carlo: resolution and efficiency against the truth.

The MC events (``km3mon.reco.kmc``: ORCA-6, KM3Sim light, real t0s in the DETX) are encoded
as the DAQ's ``IO_EVT`` and fitted, beside two references on the same events:

- **the file's own reconstruction** (Jpp's JMuon chain: prefit, simplex, Gandalf with its
  photon-arrival PDFs; the best JMuon track of each event);
- **a plain robust fit written here** (numpy + scipy, no tuning to any simulator): a scan of
  directions with a linear estimate per direction on each DOM's first triggered hit, Cauchy
  loss (scale 3 ns) fits from the best few, then a refit on the snapshot hits of a road
  around the track (first hit per DOM within 50 m and -10..+30 ns of the model). For one DU the
  same model in ROy's four parameters from five zenith starts.

``--processes`` runs the real chain: the events go into a recording, ``km3mon replay`` sends
it into our ligier, ``km3mon reco`` (a real process, the DETX above) fits them; the fits are
read back from its ``fits.csv`` and joined to the truth by frame index. Without it the same
code runs in-process (decode, calibrate, ``Reconstruction.run``).

Reported: multi-DU (events with triggered hits on >= 3 DUs) median space angle and
efficiency; single-DU (events cut to one DU with >= 4 triggered DOMs) median |Δzenith| and
efficiency; both against the number of DUs, DOMs and hits; the reasons of unfitted events.

    .venv/bin/python bench/reco_kmc.py --processes --json bench/results/reco_kmc.json
"""

from __future__ import annotations

import argparse
import csv
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from benchlib import write_json
from km3mon.daq import decode_events_hits
from km3mon.daq.files import RecordingWriter
from km3mon.detector import Detector, calibrate_hits, parse_detx
from km3mon.reco import kmc
from km3mon.reco.fit import Reconstruction
from km3mon.reco.model import (
    KAPPA,
    SPEED_OF_LIGHT_M_NS,
    fibonacci_sphere,
    line_time_ns,
    perpendicular_basis,
    space_angle_deg,
    track_time_ns,
    zenith_deg,
)

C = SPEED_OF_LIGHT_M_NS
DU_BINS = ((3, 3), (4, 4), (5, 6))
DOM_BINS = ((4, 7), (8, 11), (12, 19), (20, 1000))
HIT_BINS = ((5, 19), (20, 39), (40, 79), (80, 100_000))
LINE_DOM_BINS = ((4, 4), (5, 5), (6, 7), (8, 18))
CAUCHY_NS = 3.0
ROAD_M = 50.0


# --- the plain reference fit ----------------------------------------------------------


def first_hits(hits: np.ndarray) -> np.ndarray:
    """Rows of each DOM's earliest hit (hits of one event)."""
    order = np.lexsort((hits["time_ns"], hits["dom_id"]))
    dom = hits["dom_id"][order]
    return order[np.r_[True, dom[1:] != dom[:-1]]]


def positions(hits: np.ndarray) -> np.ndarray:
    return np.column_stack((hits["pos_x_m"], hits["pos_y_m"], hits["pos_z_m"]))


def linear_scan(pos: np.ndarray, t: np.ndarray, directions: np.ndarray) -> tuple:
    """Per direction, the least-squares (c t0, x, y) of t = t0 + (z' + KAPPA R) / c squared
    (Jpp's linear estimator) and the Cauchy cost of the resulting residuals."""
    e1, e2 = perpendicular_basis(directions)
    zp, xp, yp = pos @ directions.T, pos @ e1.T, pos @ e2.T
    w = C * t[:, None] - zp
    q = w * w - KAPPA**2 * (xp * xp + yp * yp)
    cw, cx, cy, cq = (v - v.mean(axis=0) for v in (w, xp, yp, q))
    a = np.stack([
        np.stack([np.sum(cw * cw, 0), -np.sum(cw * cx, 0), -np.sum(cw * cy, 0)], -1),
        np.stack([-np.sum(cw * cx, 0), np.sum(cx * cx, 0), np.sum(cx * cy, 0)], -1),
        np.stack([-np.sum(cw * cy, 0), np.sum(cx * cy, 0), np.sum(cy * cy, 0)], -1),
    ], -2)  # fmt: skip
    b = np.stack([0.5 * np.sum(cq * cw, 0), -0.5 * np.sum(cq * cx, 0),
                  -0.5 * np.sum(cq * cy, 0)], -1)  # fmt: skip
    ok = np.abs(np.linalg.det(a)) > 1e-300
    sol = np.zeros_like(b)
    sol[ok] = np.linalg.solve(a[ok], b[ok][..., None])[..., 0]
    x, y = sol[:, 1] / KAPPA**2, sol[:, 2] / KAPPA**2
    r = t[:, None] - (sol[:, 0] + zp + KAPPA * np.hypot(xp - x, yp - y)) / C
    cost = np.sum(np.log1p((r / 10.0) ** 2), axis=0)
    cost[~ok] = np.inf
    return cost, sol[:, 0] / C, x, y, e1, e2


def direction_of(theta: float, phi: float) -> np.ndarray:
    return np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)])


def track_fit(pos: np.ndarray, t: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, float]:
    """Cauchy fit of (theta, phi, point across the track, t0); returns (params, cost)."""

    def residuals(p: np.ndarray) -> np.ndarray:
        d = direction_of(p[0], p[1])
        e1, e2 = perpendicular_basis(d[None])
        return (t - track_time_ns(pos, p[2] * e1[0] + p[3] * e2[0], d, p[4])) / CAUCHY_NS

    fit = least_squares(residuals, start, loss="cauchy", method="trf", max_nfev=200)
    return fit.x, float(fit.cost)


def reference_track(hits: np.ndarray, directions: np.ndarray) -> np.ndarray | None:
    """The plain reference on one event's calibrated hits (all snapshot hits)."""
    triggered = hits[hits["triggered"]]
    first = triggered[first_hits(triggered)]
    if len(first) < 5:
        return None
    centre = positions(first).mean(axis=0)
    t_ref = first["time_ns"].min()
    pos, t = positions(first) - centre, first["time_ns"] - t_ref
    cost, t0, x, y, e1, e2 = linear_scan(pos, t, directions)
    best_cost, best = np.inf, None
    for k in np.argsort(cost)[:5]:
        d = directions[k]
        p = x[k] * e1[k] + y[k] * e2[k]
        theta, phi = np.arccos(np.clip(d[2], -1, 1)), np.arctan2(d[1], d[0])
        de1, de2 = perpendicular_basis(direction_of(theta, phi)[None])
        start = np.array([theta, phi, p @ de1[0], p @ de2[0], t0[k]])
        params, c = track_fit(pos, t, start)
        if c < best_cost:
            best_cost, best = c, params
    # road refit: each DOM's first snapshot hit near the track and in time with it
    d = direction_of(best[0], best[1])
    e1, e2 = perpendicular_basis(d[None])
    point = best[2] * e1[0] + best[3] * e2[0]
    all_pos, all_t = positions(hits) - centre, hits["time_ns"] - t_ref
    along = (all_pos - point) @ d
    rho = np.linalg.norm(all_pos - point - along[:, None] * d, axis=1)
    res = all_t - track_time_ns(all_pos, point, d, best[4])
    road = np.flatnonzero((rho < ROAD_M) & (res > -10) & (res < 30))
    if len(road) >= 6:
        chosen = road[first_hits(hits[road])]
        if len(chosen) >= 6:
            best, _ = track_fit(all_pos[chosen], all_t[chosen], best)
    return direction_of(best[0], best[1])


def reference_line(hits: np.ndarray) -> float | None:
    """cos θ of the plain single-line fit (Cauchy, five zenith starts) on first hits."""
    triggered = hits[hits["triggered"]]
    first = triggered[first_hits(triggered)]
    if len(first) < kmc.MIN_SINGLE_DU_DOMS:
        return None
    z, t = first["pos_z_m"], first["time_ns"] - first["time_ns"].min()
    best = None
    for theta in np.radians([150.0, 120.0, 90.0, 60.0, 30.0]):
        start = [15.0, z[np.argmin(t)], theta, -KAPPA * 15.0 / C]
        fit = least_squares(
            lambda q: (t - line_time_ns(z, q[0], q[1], np.cos(q[2]), q[3])) / CAUCHY_NS,
            start, loss="cauchy", max_nfev=200,
        )  # fmt: skip
        best = fit if best is None or fit.cost < best.cost else best
    return float(np.cos(best.x[2]))


# --- running km3mon reco --------------------------------------------------------------


def decode(detector: Detector, payloads: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    events, hits = decode_events_hits(payloads)
    return events, calibrate_hits(detector, hits)


def fits_in_process(detector: Detector, payloads: list[bytes]) -> dict:
    """Our fits per payload row: direction (multi-DU), cos θ (single-DU), the result."""
    events, hits = decode(detector, payloads)
    reconstruction = Reconstruction(detector)
    reconstruction.warm_up()
    started = time.process_time()
    result = reconstruction.run(len(events), hits)
    cpu_s = time.process_time() - started
    n = len(events)
    direction = np.full((n, 3), np.nan)
    direction[result.tracks["event"]] = result.tracks["dir"]
    ambiguous = np.zeros(n, bool)
    if "ambiguous" in (result.tracks.dtype.names or ()):
        ambiguous[result.tracks["event"]] = result.tracks["ambiguous"]
    cos_theta = np.full(n, np.nan)
    cos_theta[result.lines["event"]] = result.lines["cos_theta"]
    return {"dir": direction, "ambiguous": ambiguous, "cos_theta": cos_theta, "cpu_s": cpu_s,
            "unfitted": getattr(result, "unfitted", None)}  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def km3mon(*args: object, log: Path) -> subprocess.Popen:
    stream = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", "km3mon", *map(str, args)],
                            stdout=stream, stderr=subprocess.STDOUT)  # fmt: skip


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise TimeoutError(f"waited {timeout_s:g} s for {what}")


def run_processes(detx_text: str, payloads: list[bytes], folder: Path) -> list[dict[str, str]]:
    """ligier + ``km3mon reco`` + ``km3mon replay`` of the payloads; the rows of fits.csv."""
    from km3mon.controlhost import query_status

    detx = folder / "kmc.detx"
    detx.write_text(detx_text)
    recording = folder / "kmc.dat"
    with RecordingWriter(recording) as writer:
        for payload in payloads:
            writer.write("IO_EVT", payload)
    port = free_port()
    data = folder / "data"
    processes = [km3mon("ligier", "-P", port, "--host", "127.0.0.1", log=folder / "ligier.log")]
    try:
        wait_for(lambda: _connects(port), 30, "the ligier")
        reco = ("reco", "--detx", detx, "-p", port, "-o", folder / "plots", "--data-dir", data,
                "-i", "5")  # fmt: skip
        processes.append(km3mon(*reco, log=folder / "reco.log"))
        wait_for(lambda: "IO_EVT" in query_status(port=port), 180, "reco subscribed")
        replay = km3mon("replay", recording, "-p", port, "--max", "--no-progress",
                        log=folder / "replay.log")  # fmt: skip
        replay.wait(300)
        freshness = data / "freshness" / "reco.json"

        def consumed() -> bool:
            try:
                return json.loads(freshness.read_text()).get("messages", 0) >= len(payloads)
            except (OSError, ValueError):
                return False

        wait_for(consumed, 600, "reco consuming every event")
        metrics = data / "metrics" / "reco.json"
        seen = time.time()
        wait_for(lambda: metrics.exists() and metrics.stat().st_mtime > seen, 60, "a render")
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(30)
    with (data / "reco" / "fits.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    rows.append({"kind": "metrics", "json": (data / "metrics" / "reco.json").read_text()})
    return rows


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def fits_from_rows(rows: list[dict[str, str]], frame_index: np.ndarray) -> dict:
    n = len(frame_index)
    row_of = {int(f): i for i, f in enumerate(frame_index.tolist())}
    direction = np.full((n, 3), np.nan)
    ambiguous = np.zeros(n, bool)
    cos_theta = np.full(n, np.nan)
    metrics = None
    for r in rows:
        if r["kind"] == "metrics":
            metrics = json.loads(r["json"])
            continue
        i = row_of[int(r["frame_index"])]
        if r["kind"] == "multi-du":
            direction[i] = [float(r["dir_x"] or "nan"), float(r["dir_y"] or "nan"),
                            float(r["dir_z"])]  # fmt: skip
            ambiguous[i] = r.get("ambiguous", "") in ("1", "True", "true")
        else:
            cos_theta[i] = float(r["dir_z"])
    return {"dir": direction, "ambiguous": ambiguous, "cos_theta": cos_theta, "metrics": metrics}


# --- analysis -------------------------------------------------------------------------


def counts_per_event(detector: Detector, payloads: list[bytes]) -> dict[str, np.ndarray]:
    events, hits = decode(detector, payloads)
    hits = hits[hits["triggered"] & hits["calibrated"]]
    n = len(events)
    event = hits["event"].astype(np.int64)
    dom_key = np.unique(event * 10**10 + hits["dom_id"])
    du_key = np.unique(event * 1000 + hits["du"])
    return {
        "n_hits": np.bincount(event, minlength=n),
        "n_doms": np.bincount(dom_key // 10**10, minlength=n),
        "n_dus": np.bincount(du_key // 1000, minlength=n),
    }


def summary(angle: np.ndarray, wanted: np.ndarray) -> dict:
    fitted = wanted & np.isfinite(angle)
    return {
        "events": int(wanted.sum()),
        "efficiency": float(fitted.sum() / wanted.sum()) if wanted.any() else None,
        "median_deg": float(np.median(angle[fitted])) if fitted.any() else None,
        "p68_deg": float(np.percentile(angle[fitted], 68)) if fitted.any() else None,
    }


def bootstrap_medians(angles: list[np.ndarray], resamples: int = 4000) -> np.ndarray:
    """Medians of the same resampled events for each fit's angles (an unfitted event counts
    as 180°): how far a median of ~150 events moves with the sample."""
    rng = np.random.default_rng(2026)
    rows = rng.integers(0, len(angles[0]), (resamples, len(angles[0])))
    return np.array([np.median(np.where(np.isfinite(a), a, 180.0)[rows], axis=1) for a in angles])


def analyse(truth: dict, counts: dict, ours: dict, reference: dict) -> dict:
    whole = truth["cut_du"] == 0
    multi = whole & (counts["n_dus"] >= 3)
    single = truth["cut_du"] > 0
    true_dir = truth["true_dir"]
    out: dict = {}
    angles: dict[str, np.ndarray] = {}
    for name, fits in (("km3mon reco", ours), ("plain reference", reference),
                       ("file (Jpp JMuon chain)", {"dir": truth["file_dir"]})):  # fmt: skip
        angle = np.full(len(true_dir), np.nan)
        ok = np.isfinite(fits["dir"]).all(axis=1)
        angle[ok] = space_angle_deg(fits["dir"][ok], true_dir[ok])
        entry = {
            "multi_du": summary(angle, multi),
            "by_dus": {f"{a}-{b}": summary(angle, multi & (counts["n_dus"] >= a)
                                           & (counts["n_dus"] <= b)) for a, b in DU_BINS},
            "by_doms": {f"{a}-{b}": summary(angle, multi & (counts["n_doms"] >= a)
                                            & (counts["n_doms"] <= b)) for a, b in DOM_BINS},
            "by_hits": {f"{a}-{b}": summary(angle, multi & (counts["n_hits"] >= a)
                                            & (counts["n_hits"] <= b)) for a, b in HIT_BINS},
            "two_dus": summary(angle, whole & (counts["n_dus"] == 2)),
        }  # fmt: skip
        if "ambiguous" in fits:
            entry["ambiguous_multi_du"] = int((fits["ambiguous"] & multi).sum())
            entry["ambiguous_two_dus"] = int(
                (fits["ambiguous"] & whole & (counts["n_dus"] == 2)).sum()
            )
        if "cos_theta" in fits:
            error = np.abs(zenith_deg(fits["cos_theta"]) - zenith_deg(true_dir[:, 2]))
            entry["single_du"] = summary(error, single)
            entry["single_du_by_doms"] = {
                f"{a}-{b}": summary(
                    error, single & (counts["n_doms"] >= a) & (counts["n_doms"] <= b)
                )
                for a, b in LINE_DOM_BINS
            }
        out[name] = entry
        angles[name] = angle[multi]
    medians = bootstrap_medians([angles["km3mon reco"], angles["file (Jpp JMuon chain)"]])
    for name, row in zip(("km3mon reco", "file (Jpp JMuon chain)"), medians, strict=True):
        out[name]["multi_du"]["median_ci68_deg"] = np.percentile(row, [16, 84]).tolist()
    difference = medians[0] - medians[1]
    out["km3mon reco"]["multi_du"]["median_minus_jpp_ci68_deg"] = np.percentile(
        difference, [16, 84]
    ).tolist()
    return out


def fmt(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "–" if value is None else f"{scale * value:.{digits}f}"


def report(results: dict, n_whole: int, n_single: int) -> str:
    lines = [
        f"{n_whole} MC events, {n_single} single-DU cuts",
        "",
        "| on the same events | multi-DU, >= 3 DUs: median space angle | efficiency | "
        "single-DU: median abs(Δzenith) | efficiency |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, entry in results.items():
        single = entry.get("single_du", {})
        lines.append(
            f"| {name} | {fmt(entry['multi_du']['median_deg'])}° | "
            f"{fmt(entry['multi_du']['efficiency'], 100, 1)} % | "
            f"{fmt(single.get('median_deg'))}° | {fmt(single.get('efficiency'), 100, 1)} % |"
        )
    ours, jpp = results["km3mon reco"]["multi_du"], results["file (Jpp JMuon chain)"]["multi_du"]
    lines += ["", "Sampling uncertainty of the >= 3-DU medians (bootstrap of the events, "
              "16-84 %): km3mon reco {:.2f}-{:.2f}°, Jpp {:.2f}-{:.2f}°, km3mon minus Jpp on the "
              "same resampled events {:.2f}-{:.2f}°".format(*ours["median_ci68_deg"],
              *jpp["median_ci68_deg"], *ours["median_minus_jpp_ci68_deg"])]  # fmt: skip
    for key, title in (("by_dus", "DUs"), ("by_doms", "triggered DOMs"),
                       ("by_hits", "triggered hits")):  # fmt: skip
        lines += ["", f"| {title} (>= 3 DUs) | events | " + " | ".join(
            f"{name}: median [°] / eff." for name in results) + " |",
            "|---|---:|" + "---:|" * len(results)]  # fmt: skip
        for label in next(iter(results.values()))[key]:
            cells = [
                f"{fmt(e[key][label]['median_deg'])} / {fmt(e[key][label]['efficiency'], 100, 0)} %"
                for e in results.values()
            ]
            events = next(iter(results.values()))[key][label]["events"]
            lines.append(f"| {label} | {events} | " + " | ".join(cells) + " |")
    with_lines = {name: e for name, e in results.items() if "single_du_by_doms" in e}
    header = " | ".join(f"{name}: median abs(Δzenith) [°] / eff." for name in with_lines)
    lines += ["", f"| single-DU, triggered DOMs | cuts | {header} |",
              "|---|---:|" + "---:|" * len(with_lines)]  # fmt: skip
    first = next(iter(with_lines.values()))
    for label in first["single_du_by_doms"]:
        cells = [
            f"{fmt(e['single_du_by_doms'][label]['median_deg'])} / "
            f"{fmt(e['single_du_by_doms'][label]['efficiency'], 100, 0)} %"
            for e in with_lines.values()
        ]
        lines.append(f"| {label} | {first['single_du_by_doms'][label]['events']} | "
                     + " | ".join(cells) + " |")  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", action="store_true",
                        help="replay through a ligier into a km3mon reco process")  # fmt: skip
    parser.add_argument("--json", type=Path, help="write the numbers here as JSON too")
    args = parser.parse_args()
    mc = kmc.load()
    truth = mc.arrays()
    detector = parse_detx(mc.detx_text, "KM3NeT MC")
    counts = counts_per_event(detector, mc.payloads)
    if args.processes:
        with tempfile.TemporaryDirectory(prefix="reco-kmc-") as folder:
            rows = run_processes(mc.detx_text, mc.payloads, Path(folder))
        ours = fits_from_rows(rows, truth["frame_index"])
    else:
        ours = fits_in_process(detector, mc.payloads)
    events, hits = decode(detector, mc.payloads)
    hits = hits[hits["calibrated"]]
    directions = fibonacci_sphere(3000)
    reference = {
        "dir": np.full((len(events), 3), np.nan),
        "cos_theta": np.full(len(events), np.nan),
    }
    started = time.process_time()
    for e in range(len(events)):
        mine = hits[hits["event"] == e]
        if truth["cut_du"][e] == 0 and counts["n_dus"][e] >= 2:
            found = reference_track(mine, directions)
            if found is not None:
                reference["dir"][e] = found
        elif truth["cut_du"][e] > 0:
            found = reference_line(mine)
            if found is not None:
                reference["cos_theta"][e] = found
    reference_cpu_s = time.process_time() - started
    results = analyse(truth, counts, ours, reference)
    n_whole = int((truth["cut_du"] == 0).sum())
    print(report(results, n_whole, len(events) - n_whole))
    ours_cpu = "in its process" if args.processes else f"{ours['cpu_s']:.2f} s"
    print(f"\nreference fit CPU: {reference_cpu_s:.1f} s; km3mon reco: {ours_cpu}")
    unfitted = (ours.get("metrics") or {}).get("unfitted") or ours.get("unfitted")
    if unfitted is not None:
        print(f"unfitted by reason: {unfitted}")
    if args.json:
        document = {"args": {"processes": args.processes}, "events": n_whole,
                    "single_du_cuts": len(events) - n_whole, "results": results,
                    "unfitted": unfitted}  # fmt: skip
        write_json(args.json, document, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
