"""Synthetic DETX geometries, so the simulator and its benchmark can build any detector size.

km3net-testdata ships 6-, 21- and 115-DU files but nothing as large as ARCA's 230 DUs; this
writes a DETX v5 text for ``n_dus`` DUs on a square grid, each with a base module (floor 0, no
PMTs) and ``n_floors`` optical modules of 31 PMTs, parsed by :mod:`km3mon.detector` like any file.
DOM ids follow the real ones' look (``808...`` = low 32 bits of a CLB MAC address).
"""

from __future__ import annotations

import numpy as np

#: PMT rings of a KM3NeT DOM: (polar angle of the PMT axis from +z in degrees, PMTs in the ring,
#: azimuth of the first PMT in degrees). 1 + 5 x 6 = 31 PMTs, 19 looking down, 12 up. Angles as
#: in the real DETX files (ARCA-21 ``KM3NeT_00000133``, ORCA ``detx_v4``): rings at 56.3, 72.8,
#: 107.2, 123.7 and 148.2 degrees, neighbouring rings turned by 30 degrees against each other.
PMT_RINGS_DEG: tuple[tuple[float, int, float], ...] = (
    (180.0, 1, 0.0),
    (148.2, 6, 30.0),
    (123.7, 6, 0.0),
    (107.2, 6, 30.0),
    (72.8, 6, 0.0),
    (56.3, 6, 30.0),
)
DOM_RADIUS_M = 0.2
FIRST_DOM_ID = 808_400_000
FIRST_PMT_ID = 100_000
DOM_ID_STEP = 7
#: Orientation quaternion (identity), t0 and component status of a DOM line.
_NO_ROTATION = "1.0 0.0 0.0 0.0 0.0 0"
#: Realistic PMT t0s (``t0_seed``), as in the ARCA-21 DETX: ~480 µs (they hold the shore
#: clock offsets), spread ~1 µs between DOMs and ~1.5 ns between the PMTs of a DOM.
T0_NS = 480_000.0
T0_DOM_SPREAD_NS = 1_000.0
T0_PMT_SPREAD_NS = 1.5


def pmt_directions() -> np.ndarray:
    """Unit axes of the 31 PMTs of a DOM, ``(31, 3)``, in channel order."""
    directions = []
    for polar_deg, count, azimuth0_deg in PMT_RINGS_DEG:
        polar = np.radians(polar_deg)
        azimuth = np.radians(azimuth0_deg + 360.0 * np.arange(count) / count)
        directions.append(
            np.column_stack(
                (
                    np.sin(polar) * np.cos(azimuth),
                    np.sin(polar) * np.sin(azimuth),
                    np.full(count, np.cos(polar)),
                )
            )
        )
    return np.vstack(directions)


def synthetic_detx(
    n_dus: int,
    *,
    det_id: int = 999,
    n_floors: int = 18,
    du_spacing_m: float = 90.0,
    floor_spacing_m: float = 36.0,
    first_floor_z_m: float = 80.0,
    t0_seed: int | None = None,
) -> str:
    """DETX v5 text of ``n_dus`` DUs on a square grid (ARCA-like spacings by default).

    PMT t0s are 0, or with ``t0_seed`` drawn like a real detector's (:data:`T0_NS`).
    """
    if n_dus < 1 or n_floors < 1:
        raise ValueError(f"need at least one DU and one floor, got {n_dus} DUs, {n_floors} floors")
    side = int(np.ceil(np.sqrt(n_dus)))
    du_index = np.arange(n_dus)
    du_x_m = (du_index % side - (side - 1) / 2) * du_spacing_m
    du_y_m = (du_index // side - (side - 1) / 2) * du_spacing_m
    directions = pmt_directions()
    n_pmts = len(directions)
    lines = [
        f"{det_id} v5",
        "0.0 9999999999.0",
        "UTM WGS84 33N 587600.000 4016800.000 -3450.000",
        str(n_dus * (n_floors + 1)),
    ]
    floor_z_m = first_floor_z_m + np.arange(n_floors) * floor_spacing_m
    pmt_line = "%d %.3f %.3f %.3f %.6f %.6f %.6f %.3f 0"
    rng = np.random.default_rng(t0_seed) if t0_seed is not None else None
    dom_id = FIRST_DOM_ID
    pmt_id = FIRST_PMT_ID
    for du in range(n_dus):
        lines.append(f"{dom_id} {du + 1} 0 {du_x_m[du]:.3f} {du_y_m[du]:.3f} 0.0 {_NO_ROTATION} 0")
        dom_id += DOM_ID_STEP
        for floor, z_m in enumerate(floor_z_m.tolist(), start=1):
            centre_m = np.array([du_x_m[du], du_y_m[du], z_m])
            lines.append(
                f"{dom_id} {du + 1} {floor} {centre_m[0]:.3f} {centre_m[1]:.3f} {z_m:.3f} "
                f"{_NO_ROTATION} {n_pmts}"
            )
            dom_id += DOM_ID_STEP
            t0_ns = np.zeros(n_pmts)
            if rng is not None:
                t0_ns = (
                    T0_NS
                    + rng.normal(0, T0_DOM_SPREAD_NS)
                    + rng.normal(0, T0_PMT_SPREAD_NS, n_pmts)
                )
            rows = np.column_stack(
                (
                    pmt_id + np.arange(n_pmts),
                    centre_m + DOM_RADIUS_M * directions,
                    directions,
                    t0_ns,
                )
            )
            lines.extend(pmt_line % tuple(row) for row in rows.tolist())
            pmt_id += n_pmts
    return "\n".join(lines) + "\n"
