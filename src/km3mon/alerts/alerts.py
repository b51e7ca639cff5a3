"""`km3mon alerts`: the rules of ``[Alerts]`` evaluated every interval, notifications delivered.

It runs on the monitors' runtime without a ligier subscription (its "render" is one
evaluation), so it has a freshness record, the common flags and a clean stop like every
monitor. ``-m``/``-q`` name the DAQ logging ligier for the ``ALERT (MONITORING)`` lines, as the
original's timesync monitor took them. Between the rules and the book, :mod:`.hygiene` drops
known-bad DOMs and PMTs and hides the consequences of a cause (inhibition); the book keeps
silenced alerts from the sinks.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

from km3mon.alerts.book import AlertBook, Lifecycle
from km3mon.alerts.hygiene import known_bad, prepare
from km3mon.alerts.rules import Places, Snapshot, ThresholdRule, TriggerRate, build_rules
from km3mon.alerts.sinks import Courier, configured_sinks
from km3mon.runtime.freshness import panel_states, process_state, read_records
from km3mon.runtime.monitor import Context, Monitor, register_monitor
from km3mon.supervision import supervisor_states


class Alerts(Monitor):
    name = "alerts"
    tags = ()
    help = "alert rules over freshness, metrics and supervisord; DAQ log, webhook and e-mail"
    default_interval_s = 10.0

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "-m", "--log-ligier-ip", help="DAQ logging ligier for ALERT lines (none: no MSG sink)"
        )
        parser.add_argument(
            "-q", "--log-ligier-port", type=int, default=5553, help="its port (5553)"
        )
        parser.add_argument(
            "--supervisor-socket",
            type=Path,
            default=Path("pids/supervisor.sock"),
            help="supervisord's control socket, for FATAL processes (pids/supervisor.sock)",
        )

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        settings = context.pipeline.alerts
        self.max_per_rule = settings.max_per_rule
        self.known_bad_config = settings.known_bad
        self.rules = build_rules(settings)
        self.settings = {rule.name: rule.settings for rule in self.rules}
        args = context.args
        log_ligier = (args.log_ligier_ip, args.log_ligier_port) if args.log_ligier_ip else None
        sinks = configured_sinks(settings, log_ligier)
        lifecycle = Lifecycle(settings.flap_count, settings.flap_window_s, settings.dashboard_url)
        self.book = AlertBook(context.data_dir, lifecycle, sinks)
        self.trigger_rule = next((r for r in self.rules if isinstance(r, TriggerRate)), None)
        if self.trigger_rule is not None:
            self.trigger_rule.samples = self.book.load_samples(TriggerRate.name)
        for rule in self.rules:  # a restart keeps a threshold alert in its hysteresis band
            if isinstance(rule, ThresholdRule):
                rule.alarmed = self.book.active_keys(rule.name)
        self.causes: list[str] = []
        self.places = self._places()
        self._stopping = threading.Event()
        self.courier = Courier(context.data_dir, sinks, self._stopping)
        self.courier.start()
        context.freshness.connected = True  # no ligier to lose; "stale" if evaluations stop
        context.freshness.ligier = "none (reads data/ and supervisord)"
        self.log.warning(
            "rules: %s; sinks: %s",
            ", ".join(f"{r.name} (hold {r.settings.hold_s:g} s)" for r in self.rules),
            ", ".join(sinks) or "dashboard only",
        )

    def _places(self) -> Places:
        try:
            return Places.of_detector(self.context.detector)
        except Exception as error:  # no DETX and no database: still alert, with DOM ids only
            self.log.warning(
                "no detector (%s): DOMs named without DU and floor, du_lost is off", error
            )
            return Places()

    def stop(self) -> None:
        """Let the courier finish the delivery in hand (what is left stays queued in the
        database for the next start) and close the sinks."""
        self._stopping.set()
        self.courier.wake()
        self.courier.join(10)

    def render(self) -> None:
        now = time.time()
        raw = read_records(self.context.data_dir)
        snapshot = Snapshot(
            data_dir=self.context.data_dir,
            now=now,
            records={name: process_state(record, now) for name, record in raw.items()},
            panels=panel_states(raw, now),
            supervisor=supervisor_states(self.context.args.supervisor_socket),
            places=self.places,
        )
        evaluated = {}
        for rule in self.rules:
            try:
                evaluated[rule.name] = rule.evaluate(snapshot)
            except Exception as error:  # one broken input must not silence the other rules
                self.context.count_error(f"rule {rule.name} failed", error)
                evaluated[rule.name] = None
        bad = known_bad(self.book.db, self.known_bad_config)
        inhibition = prepare(evaluated, snapshot, bad, self.max_per_rule)
        if inhibition.causes != self.causes:
            self.log.warning("inhibited by: %s", "; ".join(inhibition.causes) or "nothing")
            self.causes = inhibition.causes
        before = dict(self.trigger_rule.samples) if self.trigger_rule else {}
        if self.book.update(inhibition.results, self.settings, now, hidden=inhibition.hidden):
            self.courier.wake()
        if self.trigger_rule is not None and self.trigger_rule.samples != before:
            self.book.save_samples(TriggerRate.name, self.trigger_rule.samples)
        freshness = self.context.freshness
        freshness.messages += 1
        freshness.last_message_at = now
        self.context.saw_data_at(now)
        counts = dict(
            self.book.db.execute(
                "SELECT state, count(*) FROM alerts WHERE state != 'resolved' GROUP BY state"
            ).fetchall()
        )
        self.context.save_metrics(
            "alerts",
            {
                "firing": counts.get("firing", 0),
                "pending": counts.get("pending", 0),
                "silenced": self.book.db.execute(
                    "SELECT count(*) FROM alerts WHERE state = 'firing' AND silenced_by IS NOT NULL"
                ).fetchone()[0],
                "inhibited": len(inhibition.hidden),
                "delivered": self.courier.sent,
                "delivery_failures": self.courier.failed,
            },
        )


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, Alerts)
