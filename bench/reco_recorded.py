"""``km3mon reco`` on the recorded IO_EVT events of ``km3net-testdata`` (no truth).

The file's events are decoded, calibrated with each packaged DETX whose DOMs match their
hits, and fitted; printed: fits per kind, unfitted by reason, Q (χ²/NDF) and zeniths.

    .venv/bin/python bench/reco_recorded.py > bench/results/reco_recorded_fit2.txt
"""

from __future__ import annotations

from pathlib import Path

import km3net_testdata
import numpy as np

from km3mon.daq import decode_events_hits
from km3mon.detector import calibrate_hits, parse_detx
from km3mon.reco.fit import Reconstruction


def payloads_of(path: Path) -> list[bytes]:
    """The file's DAQ frames: each starts with its own length (4 bytes, little endian)."""
    raw = path.read_bytes()
    frames, offset = [], 0
    while offset + 4 <= len(raw):
        size = int.from_bytes(raw[offset : offset + 4], "little")
        frames.append(raw[offset : offset + size])
        offset += size
    return frames


def main() -> int:
    data = Path(km3net_testdata.data_path("daq/IO_EVT.dat"))
    events, hits = decode_events_hits(payloads_of(data))
    print(f"{data.name}: {len(events)} events, det ids {sorted(set(events['det_id'].tolist()))}")
    for detx in sorted(Path(km3net_testdata.data_path("detx")).glob("*.detx")):
        try:
            detector = parse_detx(detx.read_text(), detx.name)
        except Exception as exc:  # old DETX formats the parser refuses
            print(f"{detx.name}: not parsed ({exc.__class__.__name__})")
            continue
        calibrated = calibrate_hits(detector, hits)
        share = calibrated["calibrated"].mean()
        if share < 0.9:
            continue
        result = Reconstruction(detector).run(len(events), calibrated)
        tracks, lines = result.tracks, result.lines
        print(f"\n{detx.name} (det {detector.det_id}): {share:.0%} of hits calibrated")
        print(f"DUs per event: {result.n_dus.tolist()}, DOMs: {result.n_doms.tolist()}")
        print(f"multi-DU fits: {len(tracks)} of {int(result.track_tried.sum())} tried")
        print(f"  Q (chi2/NDF): {np.round(tracks['quality'], 2).tolist()}")
        zenith = np.degrees(np.arccos(-tracks["dir"][:, 2]))
        print(f"  zenith (0 = down-going): {np.round(zenith, 1).tolist()}")
        print(f"single-DU fits: {len(lines)}; cos theta {np.round(lines['cos_theta'], 2).tolist()}")
        print(f"  Q: {np.round(lines['quality'], 2).tolist()}")
        print(f"unfitted by reason: {result.unfitted}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
