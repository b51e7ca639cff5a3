"""What the SN plots show is what the monitor counted: the background distribution's bars,
the threshold and the current value on the histogram; each second's peak, the burst above
the threshold, on the history."""

from __future__ import annotations

from pathlib import Path

import matplotlib.dates as mdates
import numpy as np

from km3mon.monitors.sn import OpenFrame
from km3mon.physics.coincidences import Coincidences
from tests.monitors.stamps import keep_figures
from tests.monitors.test_sn_threshold import sn_in_process

START_S = 1_700_000_000.0
BURST = 100  # coincidences in one timeslice; the background is 2 per timeslice


def test_sn_plots_draw_the_counts_the_threshold_and_the_burst(tmp_path: Path) -> None:
    monitor = sn_in_process(tmp_path)
    rng = np.random.default_rng(11)
    counts = rng.poisson(2, 1500)
    counts[-5] = BURST
    for index, count in enumerate(counts.tolist()):
        multiplicity = np.full(count, 8, np.int64)
        frame = OpenFrame(START_S + 0.1 * index, 0.0, active_doms=378)
        frame.coincidences.append(Coincidences(multiplicity, multiplicity, multiplicity,
                                               multiplicity))  # fmt: skip
        monitor._close((1, index), frame)
    figures = keep_figures(monitor.context)
    monitor.render()
    threshold = monitor.threshold()
    assert threshold is not None and threshold < BURST < monitor.highest[1]

    axes = figures["sn_bg_histogram.png"].axes[0]
    bars = [patch.get_height() for patch in axes.patches]
    assert bars == monitor.histogram[: len(bars)].tolist() and len(bars) > BURST
    assert sum(bars) == monitor.histogram.sum() > 0.95 * len(counts)  # a window per timeslice
    vertical = {line.get_label().split()[0]: line.get_xdata()[0] for line in axes.lines
                if line.get_label().startswith(("threshold", "current"))}  # fmt: skip
    assert vertical == {"threshold": threshold, "current": monitor.latest[1]}

    axes = figures["sn_pk_history.png"].axes[0]
    peaks, above = axes.lines[0], axes.lines[1]
    expected = [value for _, value in monitor.peaks]
    assert peaks.get_ydata().tolist() == expected and len(expected) >= 140  # each second's
    assert above.get_ydata().tolist() == [v for v in expected if v >= threshold]
    assert max(above.get_ydata()) == monitor.highest[1]
    burst_s = np.datetime64(int(START_S + 0.1 * (len(counts) - 5)), "s")
    assert mdates.date2num(burst_s) in mdates.date2num(above.get_xdata()).tolist()


def test_significance_axis_never_says_minus_zero() -> None:
    """A value just above the mean has a tail a hair over one half: "-0.0" on the top axis
    (seen on the ARCA-21 dashboard), now "0.0"."""
    import matplotlib

    matplotlib.use("Agg")
    from km3mon.figures.sn import background_histogram

    histogram = np.bincount(np.random.default_rng(2).poisson(0.8, 7200), minlength=64)
    figure = background_histogram(histogram, None, expected=0.8, dispersion=1.0,
                                  active_doms=378, threshold=10, false_alarms_per_week=1.0,
                                  significance=lambda value: (value - 1.03) / 2,
                                  selection="7-11 PMTs", note="test")  # fmt: skip
    labels = [label.get_text() for label in figure.axes[0].child_axes[0].get_xticklabels()]
    assert labels[0] == "0.0" and "-0.0" not in labels, labels


def test_history_legend_hides_no_peak() -> None:
    """A burst in the first minutes of the hour, as high as the plot goes: the legend sits
    above the plot (in its upper left corner it covered exactly that) and on the figure."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from km3mon.figures.sn import peak_history

    peaks = [(START_S + second, 3) for second in range(3600)]
    peaks[60] = (START_S + 60, 40)
    figure = peak_history(peaks, 12, "7-11 PMTs", "test")
    renderer = FigureCanvasAgg(figure).get_renderer()
    axes = figure.axes[0]
    box, plot = axes.get_legend().get_window_extent(renderer), axes.get_window_extent(renderer)
    assert not box.overlaps(plot), (box, plot)
    assert figure.bbox.contains(box.x0, box.y0) and figure.bbox.contains(box.x1, box.y1)
