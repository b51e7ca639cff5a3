"""The time model and KM3NeT's angle conventions, against the simulator and km3pipe."""

from __future__ import annotations

import km3pipe.math as kp_math
import numpy as np
import pytest

from km3mon.reco.model import (
    azimuth_deg,
    fibonacci_sphere,
    line_parameters,
    line_time_ns,
    space_angle_deg,
    track_time_ns,
    zenith_deg,
)
from tests.reco.simulated import arca21_sample


def test_direct_light_of_simulated_muons_follows_the_model() -> None:
    """Calibrated triggered hits (real ARCA-21 DETX, t0 ~480 µs) arrive at the model's time of
    the true muon, delayed only by jitter and scattering: the model and the simulator agree.
    Single muons: the other muons of a bundle light DOMs earlier than the leading one would."""
    sample = arca21_sample(20)
    hits = sample.hits
    hits = hits[sample.n_muons[hits["event"].astype(int)] == 1]
    e = hits["event"].astype(int)
    positions = np.column_stack((hits["pos_x_m"], hits["pos_y_m"], hits["pos_z_m"]))
    expected = np.array(
        [
            track_time_ns(p[None], sample.true_pos_m[k], sample.true_dir[k], sample.true_t_ns[k])[0]
            for p, k in zip(positions, e, strict=True)
        ]
    )
    delay = hits["time_ns"] - expected
    assert len(delay) > 500
    assert -2.0 < np.median(delay) < 8.0
    assert np.percentile(delay, 5) > -6.0  # jitter (2 ns) only: nothing much earlier


def test_single_line_model_is_the_track_model_on_the_line() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        point = rng.uniform(-100, 100, 3)
        line_xy = rng.uniform(-100, 100, 2)
        z = np.linspace(0, 700, 19)
        on_line = np.column_stack((np.full(19, line_xy[0]), np.full(19, line_xy[1]), z))
        d_c, z_c, cos_theta, t_c = line_parameters(point, direction, 12.5, line_xy)
        np.testing.assert_allclose(
            line_time_ns(z, d_c, z_c, cos_theta, t_c),
            track_time_ns(on_line, point, direction, 12.5),
            atol=1e-6,
        )


def test_angle_conventions_match_km3pipe() -> None:
    """zenith 0° = down-going, azimuth of where the muon comes from (km3pipe.math)."""
    directions = fibonacci_sphere(200)
    np.testing.assert_allclose(
        zenith_deg(directions[:, 2]), np.degrees(kp_math.zenith(directions)), atol=1e-9
    )
    np.testing.assert_allclose(
        azimuth_deg(directions[:, 0], directions[:, 1]),
        np.degrees(kp_math.azimuth(directions)),
        atol=1e-9,
    )
    assert zenith_deg(np.array([-1.0]))[0] == pytest.approx(0.0)
    assert azimuth_deg(np.array([-1.0]), np.array([0.0]))[0] == pytest.approx(0.0)  # from +x


def test_fibonacci_sphere_covers_the_sphere_evenly() -> None:
    directions = fibonacci_sphere(600)
    probe = fibonacci_sphere(5000)
    nearest = np.degrees(np.arccos(np.clip((probe @ directions.T).max(axis=1), -1, 1)))
    assert nearest.max() < 6.0  # ~8.4° spacing: every direction within ~5° of one
    assert space_angle_deg(directions[:1], directions[:1])[0] == pytest.approx(0.0, abs=1e-6)
