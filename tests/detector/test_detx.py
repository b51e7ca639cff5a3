"""DETX reading: every testdata file, km3pipe as the oracle, broken files, batch lookups."""

from __future__ import annotations

import numpy as np
import pytest

from km3mon.detector import DetectorError, parse_detx, read_detx

from .conftest import DETX_DIR, VALID_DETX, km3pipe_detector

ARCA21 = "KM3NeT_00000133_20221025.detx"
ORCA115 = "orca_115strings_av20min17mhorizontal_18OMs_alt9mvertical_v2.detx"


@pytest.mark.parametrize("name", VALID_DETX)
def test_testdata_detx_agrees_with_km3pipe(name: str) -> None:
    ours = read_detx(DETX_DIR / name)
    oracle = km3pipe_detector(name)
    dom_ids = np.array(list(oracle.doms))
    assert ours.det_id == oracle.det_id
    assert ours.version == oracle.version
    np.testing.assert_array_equal(ours.dom_ids, dom_ids)
    np.testing.assert_array_equal(ours.dom_du, [oracle.doms[d][0] for d in dom_ids])
    np.testing.assert_array_equal(ours.dom_floor, [oracle.doms[d][1] for d in dom_ids])
    np.testing.assert_allclose(
        ours.dom_pos_m, [oracle.dom_positions[d] for d in dom_ids], rtol=0, atol=1e-9
    )
    pmts = oracle.pmts
    np.testing.assert_array_equal(ours.pmt_ids, pmts.pmt_id)
    np.testing.assert_array_equal(ours.pmt_pos_m, pmts.pos)
    np.testing.assert_array_equal(ours.pmt_dir, pmts.dir)
    np.testing.assert_array_equal(ours.pmt_t0_ns, pmts.t0)
    np.testing.assert_array_equal(ours.pmt_channel, pmts.channel_id)
    np.testing.assert_array_equal(ours.dom_ids[ours.pmt_dom_index], pmts.dom_id)
    np.testing.assert_array_equal(ours.dus, sorted(set(oracle.dus)))


def test_arca21_header_and_base_modules() -> None:
    detector = read_detx(DETX_DIR / ARCA21)
    assert (detector.det_id, detector.version, len(detector.dus)) == (133, 5, 21)
    assert detector.utm is not None and detector.utm.grid == "33N"
    assert len(detector.base_dom_ids) == 21
    assert np.all(detector.n_pmts[detector.dom_floor == 0] == 0)
    assert detector.n_floors == 18
    np.testing.assert_array_equal(detector.floors, np.arange(1, 19))
    assert len(detector.optical_dom_ids) == 21 * 18


def test_unknown_floors_are_numbered_along_the_du(caplog: pytest.LogCaptureFixture) -> None:
    detector = read_detx(DETX_DIR / ORCA115)
    assert "floor -1" in caplog.text
    assert len(detector.dus) == 115
    for du in detector.dus[:3]:
        np.testing.assert_array_equal(detector.dom_floor[detector.dom_du == du], np.arange(1, 19))


def test_channel_order_runs_from_the_top_ring_to_the_bottom_pmt() -> None:
    detector = read_detx(DETX_DIR / ARCA21)
    order = detector.channel_order
    assert sorted(order.channels) == list(range(31))
    np.testing.assert_array_equal(order.rank[order.channels], np.arange(31))
    np.testing.assert_array_equal(np.bincount(order.ring), [6, 6, 6, 6, 6, 1])
    optical = np.flatnonzero(detector.n_pmts == 31)
    dir_z = detector.pmt_dir[detector.pmt_offset[optical, None] + order.channels, 2]
    ring_z = [dir_z[:, order.ring[order.channels] == ring].mean() for ring in range(6)]
    assert ring_z == sorted(ring_z, reverse=True)
    assert np.all(dir_z[:, -1] < -0.99)  # the single bottom PMT looks straight down
    assert np.sum(np.array(ring_z) > 0) == 2  # 12 PMTs look up, 19 down
    same_dom_design = read_detx(DETX_DIR / "D_ORCA006_t.A02181836.p.A02181837.r.A02182001.detx")
    np.testing.assert_array_equal(same_dom_design.channel_order.channels, order.channels)


def test_locate_flags_unknown_ids() -> None:
    detector = read_detx(DETX_DIR / ARCA21)
    rng = np.random.default_rng(1)
    ids = rng.choice(detector.dom_ids, 1000)
    ids[::7] = rng.integers(0, 2**31, len(ids[::7]))  # mostly foreign ids
    ids[3] = -5
    where = detector.locate(ids)
    truth = {int(d): (int(u), int(f)) for d, u, f in zip(*_dom_columns(detector), strict=True)}
    for dom_id, du, floor, index, known in zip(
        ids, where.du, where.floor, where.index, where.known, strict=True
    ):
        if int(dom_id) in truth:
            assert known and (du, floor) == truth[int(dom_id)]
            assert detector.dom_ids[index] == dom_id
        else:
            assert not known and (du, floor, index) == (-1, -1, -1)
    assert detector.du_floor(int(detector.dom_ids[5])) == truth[int(detector.dom_ids[5])]
    with pytest.raises(KeyError, match="not in detector 133"):
        detector.du_floor(1)


def _dom_columns(detector):
    return detector.dom_ids, detector.dom_du, detector.dom_floor


def test_pmt_rows_reject_foreign_doms_and_channels() -> None:
    detector = read_detx(DETX_DIR / ARCA21)
    base, optical = detector.base_dom_ids[0], detector.optical_dom_ids[0]
    rows = detector.pmt_rows(np.array([optical, optical, optical, base, 42]), [0, 30, 31, 0, 0])
    first = detector.pmt_offset[detector.dom_index(np.array([optical]))[0]]
    np.testing.assert_array_equal(rows, [first, first + 30, -1, -1, -1])


V3_TEXT = """# comment
23 v3
1500000000.1 9999999999.0
UTM WGS84 32N 256500.0 4743000.0 -2425.0
2
1 1 1 2
 1 1.1 1.2 1.3 -1.0 0.0 0.0 10.0 0
 2 1.4 1.5 1.6 0.0 -1.0 0.0 20.1 0
2 1 2 1
 3 1.7 1.8 1.9 0.0 0.0 -1.0 30.2 1
"""


def test_parse_from_text_keeps_status_and_validity() -> None:
    detector = parse_detx(V3_TEXT, source="db")
    assert detector.valid_from_s == 1500000000.1
    np.testing.assert_array_equal(detector.pmt_status, [0, 0, 1])
    # bit 0 is PMT_DISABLE (Jpp JPMTStatus); v3 has no DOM status: nothing disabled there
    np.testing.assert_array_equal(detector.pmt_disabled, [False, False, True])
    np.testing.assert_array_equal(detector.dom_disabled, [False, False])
    np.testing.assert_array_equal(detector.n_pmts, [2, 1])
    assert "n_doms=2" in repr(detector)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "file ends after line 0"),
        (V3_TEXT.replace("23 v3", "23 v9"), r"db:2: unknown DETX version 'v9'"),
        (V3_TEXT.replace("23 v3", "twenty-three v3"), r"db:2: expected the header line"),
        (V3_TEXT.rsplit("\n", 2)[0], "file ends after line 9 while expecting 1 PMT lines"),
        (
            V3_TEXT.replace("\n2\n1 1 1 2", "\n3\n1 1 1 2"),
            "file ends after line 10 while expecting a DOM line",
        ),
        (V3_TEXT.replace(" 20.1 0", " 20.1"), "db:8: PMT line needs 9 fields, got 8"),
        (V3_TEXT.replace(" 20.1 0", " x 0"), "db:8: non-numeric PMT line"),
        (V3_TEXT.replace("2 1 2 1", "2 1 2"), "db:9: expected a DOM line with 4 fields"),
        (V3_TEXT + "3 1 3 0\n", "db:11: unexpected line after the last of 2 DOMs"),
        (V3_TEXT.replace("2 1 2 1", "2 1 2 -1"), "db:9: bad number of PMTs -1"),
        (V3_TEXT.replace("\n2\n1 1 1 2", "\n0\n1 1 1 2"), "db:6: unexpected line"),
    ],
)
def test_broken_text_names_the_line(text: str, message: str) -> None:
    with pytest.raises(DetectorError, match=message):
        parse_detx(text, source="db")


def test_broken_testdata_file_and_truncated_file(tmp_path) -> None:
    with pytest.raises(DetectorError, match=r"invalid_multiline_comments.detx:109: expected a DOM"):
        read_detx(DETX_DIR / "detx_v5_invalid_multiline_comments.detx")
    truncated = tmp_path / "truncated.detx"
    full = (DETX_DIR / ARCA21).read_text()
    truncated.write_text(full[: len(full) // 2])
    with pytest.raises(DetectorError, match=r"truncated.detx: file ends after line \d+"):
        read_detx(truncated)
    with pytest.raises(DetectorError, match="cannot read DETX file"):
        read_detx(tmp_path / "missing.detx")
