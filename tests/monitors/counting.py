"""A minimal monitor for testing the runtime: counts 'n=<int>' messages per tag."""

from __future__ import annotations

import argparse
import atexit
import sys
import time
from collections import Counter

from km3mon.controlhost import Message
from km3mon.runtime.monitor import Monitor, add_common_arguments, run_monitor


class CountingMonitor(Monitor):
    name = "counting"
    tags = ("IO_EVT", "IO_SUM")
    default_interval_s = 0.5

    def __init__(self, context) -> None:
        super().__init__(context)
        self.counts: Counter[str] = Counter()
        self.largest_consume_bytes = 0

    def consume(self, messages: list[Message]) -> None:
        size = sum(len(message.payload) for message in messages)
        self.largest_consume_bytes = max(self.largest_consume_bytes, size)
        for message in messages:
            if not message.payload.startswith(b"n="):
                self.context.count_error("not a counting message", repr(message.payload[:10]))
                continue
            self.counts[message.tag] += 1
            self.context.saw_data_at(float(message.payload[2:]))

    def stop(self) -> None:
        self.log.warning("largest consume: %d bytes", self.largest_consume_bytes)

    def render(self) -> None:
        import matplotlib.pyplot as plt

        if self.context.args.slow_render:  # a long drawing: what was consumed meanwhile?
            before = sum(self.counts.values())
            time.sleep(self.context.args.slow_render)
            self.log.warning("consumed while drawing: %d", sum(self.counts.values()) - before)

        figure, axes = plt.subplots(figsize=(4, 3))
        axes.bar(list(self.counts), list(self.counts.values()))
        axes.set_title("messages per tag")
        self.context.save_figure("counting.png", figure)


def main() -> int:
    parser = argparse.ArgumentParser()
    add_common_arguments(parser, CountingMonitor.default_interval_s)
    parser.add_argument(
        "--slow-exit", type=float, default=0.0, help="seconds the exit takes (k40: a fit)"
    )
    parser.add_argument("--slow-render", type=float, default=0.0, help="seconds a drawing takes")
    parser.add_argument(
        "--on-receipt", action="store_true", help="consume on the receiving thread (k40)"
    )
    args = parser.parse_args(sys.argv[1:])
    CountingMonitor.consume_on_receipt = args.on_receipt
    if args.slow_exit:
        atexit.register(time.sleep, args.slow_exit)
    return run_monitor(CountingMonitor, args)


if __name__ == "__main__":
    sys.exit(main())
