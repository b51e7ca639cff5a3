"""A run against its reference: tests with scores, vetoes, and the verdict.

The reference is the run ``[Quality] reference_run`` (or the one chosen on the dashboard, which
wins while it is set), else the medians of the last ``reference_runs`` good runs of the same
detector. Each test gives a score q in [0, 1] and a status, as CMS DQM's quality tests do:
``fail`` if q is below its ``fail`` threshold, ``warn`` below ``warn``, else ``pass``; ``too few
events`` below ``min_entries`` and ``no reference`` without one (neither is a pass, and neither
decides the verdict). The tests (defaults in :data:`TESTS`; README "Run quality" says why):

* ``dom_rates`` -- per DOM, the mean summed rate within ``band`` (relative) of the reference's
  (dead and noisy DOMs); q = the fraction of the reference's active DOMs within the band;
* ``trigger_rates`` -- per trigger type the count against the reference rate times the live
  time, with Poisson errors plus the reference runs' spread (at least ``min_spread`` of the
  rate: runs differ more than Poisson says); q = the two-sided normal probability of the
  largest pull;
* ``hits_per_event`` and ``zenith`` (multi-DU fits, where ``km3mon reco`` runs) -- the
  chi-square of two histograms of counts (as CMS's Comp2RefChi2, but with ROOT's pooled
  variances for unweighted histograms), bins empty in both left out, q = the chi-square
  probability (Wilson-Hilferty, no SciPy at run time).

Vetoes make a run bad whatever the tests say; any failed test makes it bad; any warning
purgatory (a human decides); else it is good.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from km3mon.config import ConfigError, QualitySection, QualityTestSection


@dataclass(frozen=True)
class CheckSettings:
    warn: float
    fail: float
    min_entries: int
    band: float = 0.0
    min_spread: float = 0.0
    enabled: bool = True


#: Default thresholds of every test (``[Quality.<test>]`` overrides them).
TESTS: dict[str, CheckSettings] = {
    "dom_rates": CheckSettings(warn=0.97, fail=0.9, min_entries=100, band=0.5),
    "trigger_rates": CheckSettings(warn=0.01, fail=1e-4, min_entries=20, min_spread=0.05),
    "hits_per_event": CheckSettings(warn=1e-3, fail=1e-6, min_entries=200),
    "zenith": CheckSettings(warn=1e-3, fail=1e-6, min_entries=200),
}
#: Trigger types of the trigger test: the quantity counting them and the name shown.
TRIGGER_TYPES = (
    ("jdaqevent", "all events"),
    ("jtrigger3dmuon", "3DMuon"),
    ("jtrigger3dshower", "3DShower"),
    ("jtriggermxshower", "MXShower"),
    ("jtriggernb", "NB"),
)
STATUS_ORDER = ("fail", "warn", "pass", "too few events", "no reference")


def check_settings(section: QualitySection) -> dict[str, CheckSettings]:
    """Every test's effective settings; ConfigError names an unknown ``[Quality.<test>]``."""
    unknown = set(section.tests) - set(TESTS)
    if unknown:
        raise ConfigError(
            f"[Quality.{sorted(unknown)[0]}] is no quality test; known: {', '.join(TESTS)}"
        )
    settings = {}
    for name, default in TESTS.items():
        given: QualityTestSection | None = section.tests.get(name)
        values = dict(default.__dict__)
        if given is not None:
            for key in ("warn", "fail", "min_entries", "band", "min_spread", "enabled"):
                value = getattr(given, key)
                if value is not None:
                    values[key] = value
        if values["fail"] > values["warn"]:
            raise ConfigError(f"[Quality.{name}] fail ({values['fail']}) above warn")
        settings[name] = CheckSettings(**values)
    return settings


@dataclass
class Reference:
    """What a run is compared with: medians over the reference runs (or one chosen run)."""

    runs: list[int]
    source: str
    dom_rate_khz: dict[int, float]
    trigger_rates_hz: dict[str, tuple[float, float]]  # median and spread of the runs
    histograms: dict[str, np.ndarray]
    quantities: dict[str, float]

    def summary(self) -> dict[str, Any]:
        return {"runs": self.runs, "source": self.source, "quantities": self.quantities}


def build_reference(records: list[dict[str, Any]], source: str) -> Reference | None:
    """The reference of these ended runs' records (with their DOM arrays); None without any."""
    if not records:
        return None
    by_dom: dict[int, list[float]] = {}
    for record in records:
        for dom, rate in zip(record["dom_ids"].tolist(), record["dom_rate_khz"].tolist(),
                             strict=True):  # fmt: skip
            if math.isfinite(rate):
                by_dom.setdefault(dom, []).append(rate)
    rates: dict[str, tuple[float, float]] = {}
    for key, _ in TRIGGER_TYPES:
        values = [
            r["quantities"][key] / r["quantities"]["livetime_s"]
            for r in records
            if r["quantities"].get("livetime_s") and key in r["quantities"]
        ]
        if values:
            median = float(np.median(values))
            rates[key] = (median, 1.4826 * float(np.median(np.abs(np.subtract(values, median)))))
    histograms: dict[str, np.ndarray] = {}
    for record in records:
        for name, counts in record["histograms"].items():
            counts = np.asarray(counts, np.float64)
            if name in histograms and len(histograms[name]) == len(counts):
                histograms[name] = histograms[name] + counts
            elif name not in histograms:
                histograms[name] = counts
    numeric: dict[str, list[float]] = {}
    for record in records:
        for key, value in record["quantities"].items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                numeric.setdefault(key, []).append(float(value))
    return Reference(
        runs=[int(r["run"]) for r in records],
        source=source,
        dom_rate_khz={dom: float(np.median(v)) for dom, v in by_dom.items()},
        trigger_rates_hz=rates,
        histograms=histograms,
        quantities={key: float(np.median(v)) for key, v in numeric.items()},
    )


def _status(q: float, settings: CheckSettings) -> str:
    if q < settings.fail:
        return "fail"
    return "warn" if q < settings.warn else "pass"


def _result(name: str, status: str, q: float | None, text: str, **extra: Any) -> dict[str, Any]:
    return {"test": name, "status": status, "q": q, "text": text, **extra}


def dom_rates_test(
    record: dict[str, Any], reference: Reference | None, settings: CheckSettings
) -> dict[str, Any]:
    name = "dom_rates"
    slices = round(record["quantities"]["livetime_s"] * 10)
    if slices < settings.min_entries:
        return _result(name, "too few events", None, f"{slices} summary slices")
    if reference is None or not reference.dom_rate_khz:
        return _result(name, "no reference", None, "no reference run")
    considered, dead, noisy, off = 0, [], [], []
    for dom, rate in zip(record["dom_ids"].tolist(), record["dom_rate_khz"].tolist(),
                         strict=True):  # fmt: skip
        expected = reference.dom_rate_khz.get(dom)
        if expected is None or expected <= 0:
            continue
        considered += 1
        if not math.isfinite(rate) or rate < (1 - settings.band) * expected:
            (dead if not math.isfinite(rate) or rate == 0 else off).append(dom)
        elif rate > (1 + settings.band) * expected:
            noisy.append(dom)
    if not considered:
        return _result(name, "no reference", None, "no DOM of this run in the reference")
    outside = len(dead) + len(noisy) + len(off)
    q = 1 - outside / considered
    text = (
        f"{outside} of {considered} DOMs outside ±{settings.band:.0%} of the reference "
        f"({len(dead)} dead, {len(off)} low, {len(noisy)} high)"
    )
    return _result(name, _status(q, settings), q, text, dead=dead, low=off, high=noisy)


def _normal_probability(pull: float) -> float:
    """Two-sided probability of a normal deviation at least ``|pull|``."""
    return math.erfc(abs(pull) / math.sqrt(2))


def trigger_rates_test(
    record: dict[str, Any], reference: Reference | None, settings: CheckSettings
) -> dict[str, Any]:
    name = "trigger_rates"
    if reference is None or not reference.trigger_rates_hz:
        return _result(name, "no reference", None, "no reference run")
    quantities = record["quantities"]
    livetime_s = quantities["livetime_s"]
    pulls: dict[str, dict[str, float]] = {}
    for key, label in TRIGGER_TYPES:
        if key not in reference.trigger_rates_hz:
            continue
        median_hz, spread_hz = reference.trigger_rates_hz[key]
        observed = quantities.get(key, 0)
        expected = median_hz * livetime_s
        if expected < settings.min_entries and observed < settings.min_entries:
            continue
        spread = max(spread_hz, settings.min_spread * median_hz) * livetime_s
        sigma = math.sqrt(max(expected, 1.0) + spread**2)
        pull = (observed - expected) / sigma
        pulls[label] = {
            "observed": observed,
            "expected": round(expected, 1),
            "pull": round(pull, 2),
            "q": _normal_probability(pull),
        }
    if not pulls:
        return _result(name, "too few events", None, "fewer events than min_entries expected")
    worst = min(pulls, key=lambda label: pulls[label]["q"])
    q = pulls[worst]["q"]
    text = (
        f"worst: {worst} {pulls[worst]['observed']} events, {pulls[worst]['expected']:g} "
        f"expected (pull {pulls[worst]['pull']:+.1f})"
    )
    return _result(name, _status(q, settings), q, text, types=pulls)


def chi2_probability(chi2: float, dof: int) -> float:
    """P(chi-square with ``dof`` degrees of freedom >= ``chi2``), Wilson-Hilferty's cube-root
    normal approximation (good to a few per cent of q where thresholds sit)."""
    if dof <= 0:
        return 1.0
    scale = 2.0 / (9.0 * dof)
    z = ((chi2 / dof) ** (1.0 / 3.0) - (1.0 - scale)) / math.sqrt(scale)
    return 0.5 * math.erfc(z / math.sqrt(2))


def shape_test(
    name: str,
    histogram: list[int] | np.ndarray,
    reference: Reference | None,
    settings: CheckSettings,
) -> dict[str, Any]:
    """CMS Comp2RefChi2 of ``histogram`` against the reference's histogram of the same name."""
    counts = np.asarray(histogram, np.float64)
    entries = int(counts.sum())
    if entries < settings.min_entries:
        return _result(name, "too few events", None, f"{entries} entries")
    expected = None if reference is None else reference.histograms.get(name)
    if expected is None or len(expected) != len(counts) or expected.sum() < settings.min_entries:
        return _result(name, "no reference", None, "no reference with enough entries")
    total, ref_total = counts.sum(), expected.sum()
    used = (counts > 0) | (expected > 0)
    n, r = counts[used], expected[used]
    # Both are counts: each bin's variance is estimated from the two pooled (n + r), as ROOT's
    # Chi2Test does for two unweighted histograms. Each sample's own counts as variances
    # (CMS's Comp2RefChi2) make a bin empty in a short run and filled in the reference add
    # its whole reference count to chi2: clean partial runs failed at q ~ 1e-8.
    chi2 = float(np.sum((ref_total * n - total * r) ** 2 / (n + r)) / (total * ref_total))
    dof = int(used.sum()) - 1
    q = chi2_probability(chi2, dof)
    text = f"chi2/ndf = {chi2:.1f}/{dof}, {entries} entries (reference {int(ref_total)})"
    return _result(name, _status(q, settings), q, text, chi2=chi2, ndf=dof)


def vetoes(quantities: dict[str, Any], section: QualitySection) -> list[str]:
    """The vetoes this run fails, as reasons naming the ``[Quality]`` key."""
    reasons = []
    livetime_s = quantities.get("livetime_s") or 0.0
    if livetime_s < section.min_livetime_s:
        reasons.append(
            f"min_livetime_s: livetime_s {livetime_s:g} s below {section.min_livetime_s:g} s"
        )
    daq = quantities.get("daq")
    if daq is not None and daq < section.min_daq:
        reasons.append(f"min_daq: daq {daq:.4f} below {section.min_daq:g}")
    expected = quantities.get("doms_expected") or 0
    if expected:
        active = quantities.get("doms_active", 0) / expected
        if active < section.min_doms_active:
            reasons.append(
                f"min_doms_active: {quantities.get('doms_active')} of {expected} DOMs active "
                f"({active:.3f}) below {section.min_doms_active:g}"
            )
    out_sync = quantities.get("out_sync")
    if out_sync is not None and out_sync > section.max_out_sync:
        reasons.append(f"max_out_sync: out_sync {out_sync:.4f} above {section.max_out_sync:g}")
    white_rabbit = quantities.get("whiterabbitstatus")
    if white_rabbit is not None and white_rabbit < section.min_whiterabbitstatus:
        reasons.append(
            f"min_whiterabbitstatus: whiterabbitstatus {white_rabbit:.4f} below "
            f"{section.min_whiterabbitstatus:g}"
        )
    return reasons


def judge(
    record: dict[str, Any],
    reference: Reference | None,
    section: QualitySection,
    settings: dict[str, CheckSettings],
) -> dict[str, Any]:
    """Tests, reasons and the verdict of one run's record (quantities, DOM arrays and
    histograms as :class:`~km3mon.quality.store.QualityStore` keeps them)."""
    tests = []
    if settings["dom_rates"].enabled:
        tests.append(dom_rates_test(record, reference, settings["dom_rates"]))
    if settings["trigger_rates"].enabled:
        tests.append(trigger_rates_test(record, reference, settings["trigger_rates"]))
    for name in ("hits_per_event", "zenith"):
        if settings[name].enabled and name in record["histograms"]:
            tests.append(shape_test(name, record["histograms"][name], reference, settings[name]))
    reasons = vetoes(record["quantities"], section)
    reasons += [f"{t['test']} failed: {t['text']}" for t in tests if t["status"] == "fail"]
    warnings = [f"{t['test']} warning: {t['text']}" for t in tests if t["status"] == "warn"]
    if reasons:
        verdict = "bad"
    elif warnings:
        verdict = "purgatory"
    else:
        verdict = "good"
    zenith = next((t for t in tests if t["test"] == "zenith"), None)
    return {
        "verdict": verdict,
        "reasons": reasons + warnings,
        "tests": tests,
        "reference": reference.summary() if reference else {"runs": [], "source": "none"},
        "zenith_shape": zenith["q"] if zenith else None,
    }
