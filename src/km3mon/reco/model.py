"""The Cherenkov time model of a muon track, and KM3NeT's conventions for its angles.

A muon passes point ``p`` at time ``t0`` going along the unit vector ``d``. Its direct
Cherenkov light reaches a PMT at ``x`` at

    t(x) = t0 + (l + KAPPA * rho) / c,   l = (x - p) . d,   rho = |x - p - l d|

(``rho``: distance of the PMT from the track). The light is emitted at the Cherenkov angle of
the phase index and travels at the group velocity, so ``KAPPA = (n_g - cos θc) / sin θc``
with ``cos θc = 1 / n_phase``; with one index ``n`` for both this is ROy's ``sqrt(n² - 1)``.

For one vertical line (a DU) only ``z`` is measured; with ``d_c`` the distance of closest
approach, ``z_c`` its height on the line, ``t_c`` the time the muon is there and ``cos θ``
the z-component of ``d`` (ROy's parameters):

    t(z) = t_c + ((z - z_c) cos θ + KAPPA * sqrt(d_c² + (z - z_c)² sin² θ)) / c

Azimuth does not enter: one line cannot measure it.
"""

from __future__ import annotations

import numpy as np

SPEED_OF_LIGHT_M_NS = 0.299792458
#: Sea water at ~450 nm: phase index (sets the Cherenkov angle) and group index (sets the
#: speed of the light), the values Jpp uses for the deep Mediterranean (1.38 = KM3NeT's
#: INDEX_OF_REFRACTION_WATER, the group index).
INDEX_OF_REFRACTION_PHASE = 1.35
INDEX_OF_REFRACTION_GROUP = 1.38
COS_CHERENKOV = 1.0 / INDEX_OF_REFRACTION_PHASE
SIN_CHERENKOV = float(np.sqrt(1.0 - COS_CHERENKOV**2))
KAPPA = (INDEX_OF_REFRACTION_GROUP - COS_CHERENKOV) / SIN_CHERENKOV


def track_time_ns(
    positions_m: np.ndarray, point_m: np.ndarray, direction: np.ndarray, time_ns: float
) -> np.ndarray:
    """Arrival time of the direct Cherenkov light at ``positions_m`` (n, 3)."""
    offset = np.asarray(positions_m, float) - point_m
    along = offset @ direction
    rho = np.sqrt(np.maximum(np.einsum("ij,ij->i", offset, offset) - along**2, 0.0))
    return time_ns + (along + KAPPA * rho) / SPEED_OF_LIGHT_M_NS


def line_time_ns(
    z_m: np.ndarray, d_c_m: float, z_c_m: float, cos_theta: float, t_c_ns: float
) -> np.ndarray:
    """ROy's single-line model: arrival time at height ``z_m`` on the line."""
    dz = np.asarray(z_m, float) - z_c_m
    rho = np.sqrt(d_c_m**2 + dz**2 * (1.0 - cos_theta**2))
    return t_c_ns + (dz * cos_theta + KAPPA * rho) / SPEED_OF_LIGHT_M_NS


def line_parameters(
    point_m: np.ndarray, direction: np.ndarray, time_ns: float, line_xy_m: np.ndarray
) -> tuple[float, float, float, float]:
    """(d_c, z_c, cos θ, t_c) of a track seen from the vertical line at ``line_xy_m``.

    The closest approach between track and line is horizontal; a vertical track has no
    unique one and is taken where it passes ``point_m``'s height.
    """
    offset_xy = np.asarray(point_m[:2], float) - line_xy_m
    d_xy = np.asarray(direction[:2], float)
    norm2 = float(d_xy @ d_xy)
    along = -float(offset_xy @ d_xy) / norm2 if norm2 > 1e-12 else 0.0
    closest = offset_xy + along * d_xy
    return (
        float(np.hypot(*closest)),
        float(point_m[2] + along * direction[2]),
        float(direction[2]),
        float(time_ns + along / SPEED_OF_LIGHT_M_NS),
    )


def zenith_deg(dir_z: np.ndarray) -> np.ndarray:
    """KM3NeT zenith of a direction of travel: where it comes from, 0° = down-going."""
    return np.degrees(np.arccos(np.clip(-np.asarray(dir_z, float), -1.0, 1.0)))


def azimuth_deg(dir_x: np.ndarray, dir_y: np.ndarray) -> np.ndarray:
    """KM3NeT azimuth of a direction of travel: of where it comes from, in [0, 360)."""
    return np.degrees(np.arctan2(-np.asarray(dir_y, float), -np.asarray(dir_x, float))) % 360.0


def space_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle between unit vectors, row by row (n, 3)."""
    cosine = np.clip(np.einsum("ij,ij->i", np.atleast_2d(a), np.atleast_2d(b)), -1.0, 1.0)
    return np.degrees(np.arccos(cosine))


def fibonacci_sphere(n: int) -> np.ndarray:
    """``n`` nearly evenly spaced unit vectors; spacing ~ sqrt(4π / n) rad."""
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    phi = np.pi * (1.0 + np.sqrt(5.0)) * k
    r = np.sqrt(1.0 - z**2)
    return np.column_stack((r * np.cos(phi), r * np.sin(phi), z))


def perpendicular_basis(directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors (n, 3) per direction, orthogonal to it and to each other."""
    d = np.atleast_2d(directions)
    helper = np.where(np.abs(d[:, 2:3]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])
    e1 = np.cross(helper, d)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(d, e1)
    return e1, e2
