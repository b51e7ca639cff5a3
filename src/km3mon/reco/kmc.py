"""KM3NeT's own Monte Carlo muon events as the DAQ would send them, with their truth.

The reconstruction is validated on events it did not make up: KM3NeT MC files
(``km3net-testdata``, offline format, read with km3io) carry every snapshot hit of an event
(DOM, channel, calibrated time, ToT, trigger mask, PMT position and direction from the MC's
geometry), the true particles and the file's own reconstruction (Jpp's JMuon chain).

- **DETX**: every DOM and PMT of the MC's detector. Positions and directions are the MC's (as
  its hits carry them); PMTs no hit shows keep the reference DETX's, moved by their DOM's
  shift. The t0s are the real ones of the reference DETX (ORCA-6, ~208 µs, ns-scale spread),
  so a wrong t0 handling shows as a bad fit.
- **IO_EVT**: raw TDC = MC hit time - t0, rounded to the ns as the DAQ does; triggered hits
  are those with a trigger mask, every hit is a snapshot hit. Events get consecutive
  timeslices (frame index 1, 2, ...; UTC 0.1 s apart from ``start_utc_s``), so a replay has
  no DAQ-time jumps; the trigger counter is the file's.
- **Single-DU events**: an event cut to one DU (its hits only) for every DU with triggered
  hits on at least ``MIN_SINGLE_DU_DOMS`` DOMs, as separate events after the full ones.

Usable files have hits with positions and a true muon: the ORCA-6 muon-CC file (140 events)
and the events with a muon of the v9.2 neutrino sample (same detector; 14 of 30). The others
are electron/NC events, or have hits without positions for a detector with no DETX here.
Needs the test extras (km3io, km3net-testdata), imported on use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from km3mon.daq.event import SNAPSHOT_HIT_DTYPE, TRIGGERED_HIT_DTYPE, Event, encode_event
from km3mon.daq.preamble import DAQHeader
from km3mon.detector import Detector, parse_detx, read_detx

ORCA6_MUONS = (
    "offline/mcv6.0.gsg_muon_highE-CC_50-500GeV.km3sim.jterbr00008357.jorcarec.aanet.905.root"
)
ORCA6_NEUTRINOS = (
    "offline/KM3NeT_00000049_00011291.mc.gsg_neutrinos.km3sim_sirene_merged.jterbr."
    "jppmuon_jppshower_static.offline.v9.2.sample.root"
)
MC_FILES = (ORCA6_MUONS, ORCA6_NEUTRINOS)
REFERENCE_DETX = "detx/D_ORCA006_t.A02181836.p.A02181837.r.A02182001.detx"
MIN_SINGLE_DU_DOMS = 4
#: Jpp's JMUONGANDALF reconstruction stage: the file's best fit must have reached it.
JMUONGANDALF = 3
CYCLES_PER_SLICE = 6_250_000  # 100 ms in 16 ns cycles


@dataclass
class MCEvents:
    """Events of one or more MC files, encoded, with per-event truth (rows = payloads)."""

    detx_text: str
    payloads: list[bytes] = field(default_factory=list)
    #: per payload: source file (index into MC_FILES), event in the file, DU it was cut to
    #: (0: the whole event), true muon direction, the file's own best fit (NaN: none),
    #: muon energy (GeV), frame index and trigger counter of the payload; the true muon's
    #: start point (m) and time (ns, MC clock: not the hits' clock)
    source: list[int] = field(default_factory=list)
    file_event: list[int] = field(default_factory=list)
    cut_du: list[int] = field(default_factory=list)
    true_dir: list[np.ndarray] = field(default_factory=list)
    file_dir: list[np.ndarray] = field(default_factory=list)
    energy_gev: list[float] = field(default_factory=list)
    frame_index: list[int] = field(default_factory=list)
    trigger_counter: list[int] = field(default_factory=list)
    true_pos: list[np.ndarray] = field(default_factory=list)
    true_t: list[float] = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            name: np.asarray(getattr(self, name))
            for name in ("source", "file_event", "cut_du", "true_dir", "file_dir",
                         "energy_gev", "frame_index", "trigger_counter", "true_pos", "true_t")
        }  # fmt: skip


def _path(name: str) -> str:
    import km3net_testdata

    return km3net_testdata.data_path(name)


def _flat(array) -> np.ndarray:
    import awkward as ak

    return ak.to_numpy(ak.flatten(array))


def build_detx(
    reference: Detector, pmt_key: np.ndarray, pos: np.ndarray, direction: np.ndarray
) -> str:
    """DETX v5 text of the reference detector with the MC's PMT positions and directions
    (``pmt_key`` = dom_id * 100 + channel, one row each) and the reference t0s."""
    rows = reference.pmt_rows(pmt_key // 100, pmt_key % 100)
    known = rows >= 0
    pmt_pos = reference.pmt_pos_m.copy()
    pmt_dir = reference.pmt_dir.copy()
    pmt_pos[rows[known]] = pos[known]
    pmt_dir[rows[known]] = direction[known]
    # PMTs the MC never shows: moved with their DOM (mean shift of its shown PMTs)
    seen = np.zeros(len(pmt_pos), bool)
    seen[rows[known]] = True
    dom_of_pmt = reference.pmt_dom_index
    n_doms = len(reference.dom_ids)
    counts = np.bincount(dom_of_pmt[seen], minlength=n_doms)
    shift = (
        np.column_stack(
            [
                np.bincount(dom_of_pmt[seen], (pmt_pos - reference.pmt_pos_m)[seen, k], n_doms)
                for k in range(3)
            ]
        )
        / np.maximum(counts, 1)[:, None]
    )
    pmt_pos[~seen] += shift[dom_of_pmt[~seen]]
    dom_pos = reference.dom_pos_m + shift
    lines = [f"{reference.det_id} v5", "0.0 9999999999.0",
             "UTM WGS84 32N 256500.000 4743000.000 -2440.000", str(n_doms)]  # fmt: skip
    for d in range(n_doms):
        first, n = int(reference.pmt_offset[d]), int(reference.n_pmts[d])
        x, y, z = dom_pos[d]
        lines.append(
            f"{reference.dom_ids[d]} {reference.dom_du[d]} {reference.dom_floor[d]} "
            f"{x:.3f} {y:.3f} {z:.3f} 1.0 0.0 0.0 0.0 0.0 0 {n}"
        )
        for p in range(first, first + n):
            lines.append(
                f"{p + 1} {pmt_pos[p, 0]:.3f} {pmt_pos[p, 1]:.3f} {pmt_pos[p, 2]:.3f} "
                f"{pmt_dir[p, 0]:.6f} {pmt_dir[p, 1]:.6f} {pmt_dir[p, 2]:.6f} "
                f"{reference.pmt_t0_ns[p]:.3f} 0"
            )
    return "\n".join(lines) + "\n"


@dataclass
class _FileEvents:
    counts: np.ndarray
    dom: np.ndarray
    channel: np.ndarray
    time_ns: np.ndarray
    tot: np.ndarray
    trig: np.ndarray
    pos: np.ndarray
    dir: np.ndarray
    true_dir: np.ndarray
    true_pos: np.ndarray
    true_t: np.ndarray
    energy_gev: np.ndarray
    file_dir: np.ndarray
    run: np.ndarray
    trigger_counter: np.ndarray
    trigger_mask: np.ndarray
    overlays: np.ndarray


def _read(name: str) -> _FileEvents:
    import awkward as ak
    import km3io
    from km3io.tools import best_jmuon

    reader = km3io.OfflineReader(_path(name))
    hits = reader.hits
    counts = ak.to_numpy(ak.num(hits.dom_id))
    mc = reader.mc_tracks
    pdg, energy = mc.pdgid, mc.E
    mc_dir = [mc.dir_x, mc.dir_y, mc.dir_z]
    true_dir = np.full((len(counts), 3), np.nan)
    true_pos = np.full((len(counts), 3), np.nan)
    true_t = np.full(len(counts), np.nan)
    muon_energy = np.full(len(counts), np.nan)
    for e in range(len(counts)):
        muons = np.flatnonzero(np.abs(ak.to_numpy(pdg[e])) == 13)
        if len(muons):
            k = muons[np.argmax(ak.to_numpy(energy[e])[muons])]
            true_dir[e] = [float(component[e][k]) for component in mc_dir]
            true_pos[e] = [float(component[e][k]) for component in (mc.pos_x, mc.pos_y, mc.pos_z)]
            true_t[e] = float(mc.t[e][k])
            muon_energy[e] = float(energy[e][k])
    best = best_jmuon(reader.tracks)
    file_dir = np.column_stack([ak.to_numpy(ak.fill_none(getattr(best, f"dir_{a}"), np.nan))
                                for a in "xyz"])  # fmt: skip
    return _FileEvents(
        counts,
        _flat(hits.dom_id).astype(np.int64),
        _flat(hits.channel_id).astype(np.int64),
        _flat(hits.t).astype(np.float64),
        _flat(hits.tot).astype(np.int64),
        _flat(hits.trig).astype(np.uint64),
        np.column_stack([_flat(getattr(hits, f"pos_{a}")) for a in "xyz"]),
        np.column_stack([_flat(getattr(hits, f"dir_{a}")) for a in "xyz"]),
        true_dir,
        true_pos,
        true_t,
        muon_energy,
        file_dir,
        np.asarray(reader.run_id, np.int64),
        np.asarray(reader.trigger_counter, np.int64),
        np.asarray(reader.trigger_mask, np.uint64),
        np.asarray(reader.overlays, np.int64),
    )


def load(files: tuple[str, ...] = MC_FILES, *, start_utc_s: int = 1_750_000_000,
         max_events: int | None = None, single_du: bool = True) -> MCEvents:  # fmt: skip
    """Encode the muon events of ``files`` (the first ``max_events`` of each with a true
    muon), then their single-DU cuts."""
    reference = read_detx(_path(REFERENCE_DETX))
    data = [_read(name) for name in files]
    keys = np.concatenate([f.dom * 100 + f.channel for f in data])
    unique, first = np.unique(keys, return_index=True)
    detx_text = build_detx(
        reference, unique, np.concatenate([f.pos for f in data])[first],
        np.concatenate([f.dir for f in data])[first],
    )  # fmt: skip
    detector = parse_detx(detx_text, "KM3NeT MC")
    out = MCEvents(detx_text)
    pending_cuts: list[tuple] = []
    for source, f in enumerate(data):
        offsets = np.r_[0, np.cumsum(f.counts)]
        rows = detector.pmt_rows(f.dom, f.channel)
        tdc = np.rint(f.time_ns - np.where(rows >= 0, detector.pmt_t0_ns[rows], np.nan))
        du = np.where(rows >= 0, detector.dom_du[detector.pmt_dom_index[rows]], -1)
        taken = 0
        for e in range(len(f.counts)):
            if not np.isfinite(f.true_dir[e, 0]) or (
                max_events is not None and taken >= max_events
            ):
                continue
            taken += 1
            part = slice(offsets[e], offsets[e + 1])
            good = (rows[part] >= 0) & (tdc[part] >= 0)
            hit_rows = np.arange(offsets[e], offsets[e + 1])[good]
            truth = (source, e, f.true_dir[e], f.file_dir[e], f.energy_gev[e], f.run[e],
                     f.trigger_counter[e], f.trigger_mask[e], f.overlays[e], f.true_pos[e],
                     f.true_t[e])  # fmt: skip
            _append(out, f, hit_rows, tdc, 0, truth, start_utc_s, detector.det_id)
            if not single_du:
                continue
            triggered = hit_rows[f.trig[hit_rows] > 0]
            for line in np.unique(du[triggered]).tolist():
                on_line = triggered[du[triggered] == line]
                if len(np.unique(f.dom[on_line])) >= MIN_SINGLE_DU_DOMS:
                    pending_cuts.append((f, hit_rows[du[hit_rows] == line], tdc, line, truth))
    for f, hit_rows, tdc, line, truth in pending_cuts:
        _append(out, f, hit_rows, tdc, line, truth, start_utc_s, detector.det_id)
    return out


def _append(out: MCEvents, f: _FileEvents, rows: np.ndarray, tdc: np.ndarray, cut_du: int,
            truth: tuple, start_utc_s: int, det_id: int) -> None:  # fmt: skip
    source, e, true_dir, file_dir, energy, run, counter, mask, overlays, pos, t = truth
    rows = rows[np.lexsort((tdc[rows], f.channel[rows], f.dom[rows]))]
    snapshot = np.zeros(len(rows), SNAPSHOT_HIT_DTYPE)
    snapshot["dom_id"] = f.dom[rows]
    snapshot["channel"] = f.channel[rows]
    snapshot["time_ns"] = tdc[rows]
    snapshot["tot"] = np.clip(f.tot[rows], 0, 255)
    is_triggered = f.trig[rows] > 0
    triggered = np.zeros(int(is_triggered.sum()), TRIGGERED_HIT_DTYPE)
    for name in SNAPSHOT_HIT_DTYPE.names:
        triggered[name] = snapshot[name][is_triggered]
    triggered["trigger_mask"] = f.trig[rows][is_triggered]
    index = len(out.payloads)
    seconds, tenth = divmod(index, 10)
    header = DAQHeader(det_id, int(run), index + 1, start_utc_s + seconds,
                       tenth * CYCLES_PER_SLICE)  # fmt: skip
    event = Event(header, int(counter), int(mask), int(overlays), triggered, snapshot)
    out.payloads.append(encode_event(event))
    out.source.append(source)
    out.file_event.append(e)
    out.cut_du.append(cut_du)
    out.true_dir.append(np.asarray(true_dir, float))
    out.file_dir.append(np.asarray(file_dir, float))
    out.energy_gev.append(float(energy))
    out.frame_index.append(index + 1)
    out.trigger_counter.append(int(counter))
    out.true_pos.append(np.asarray(pos, float))
    out.true_t.append(float(t))
