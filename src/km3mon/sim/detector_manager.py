"""`km3mon detector-manager`: a stand-in for the Detector Manager's HTTP monitoring API.

``rttc`` polls the real one the way km3pipe's ``DMMonitor`` does:

* ``GET /mon/clb/outparams`` -> JSON list of the parameter paths it knows;
* ``GET /mon/clb/outparams/<parameter path>`` -> ``{"value": ...}`` for one parameter;
* ``GET /monshortdef?name=NAME&paths=/mon/clb/outparams/P1,/mon/...`` -> ``OK`` (defines a session);
* ``GET /monshort/NAME`` -> JSON list of ``{"value": ...}``, one per path, in session order.

Parameters per DU base CLB (floor 0): ``wr_mu/<du>/0`` (White Rabbit round trip, ps) and
``wr_delta/<du>/0/<0..3>`` (fixed TX/RX delays of master and slave, ps). The round trip per
DU is a fixed cable length plus white noise and a slow daily drift, so the RTTC
``wr_mu - sum(wr_delta)`` looks like a real one.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np

log = logging.getLogger("km3mon.detector_manager")

DEFAULT_PORT = 1302
BASE = "/mon/clb/outparams"
CABLE_RTT_PS = 980_000_000  # ~100 km of fibre to the ARCA site, both ways
NOISE_PS = 4.0
DRIFT_PS = 25.0
DAY_S = 86400.0


class WhiteRabbitModel:
    """Round-trip parameters of the base CLB of each DU, as functions of time."""

    def __init__(self, dus: list[int], seed: int = 0) -> None:
        self.dus = sorted(dus)
        rng = np.random.default_rng(seed)
        self._cable_ps = {du: CABLE_RTT_PS + int(rng.integers(0, 2_000_000)) for du in self.dus}
        self._deltas_ps = {
            du: [int(v) for v in rng.integers(50_000, 250_000, 4)] for du in self.dus
        }
        self._phase = {du: float(rng.uniform(0, 2 * math.pi)) for du in self.dus}
        self._rng = rng
        self._lock = threading.Lock()

    def paths(self) -> list[str]:
        names = []
        for du in self.dus:
            names.append(f"wr_mu/{du}/0")
            names += [f"wr_delta/{du}/0/{i}" for i in range(4)]
        return names

    def value(self, path: str, now: float | None = None) -> int:
        """The current value of ``wr_mu/<du>/0`` or ``wr_delta/<du>/0/<i>``; KeyError if unknown."""
        parts = path.strip("/").split("/")
        try:
            du = int(parts[1])
            if parts[0] == "wr_mu" and len(parts) == 3 and parts[2] == "0" and du in self._cable_ps:
                return self._round_trip(du, time.time() if now is None else now)
            if (
                parts[0] == "wr_delta"
                and len(parts) == 4
                and parts[2] == "0"
                and du in self._deltas_ps
            ):
                return self._deltas_ps[du][int(parts[3])]
        except (IndexError, ValueError):
            pass
        raise KeyError(path)

    def rttc(self, du: int, now: float) -> float:
        """The cable round-trip time without noise: what ``rttc`` should see on average."""
        drift = DRIFT_PS * math.sin(2 * math.pi * now / DAY_S + self._phase[du])
        return self._cable_ps[du] + drift

    def _round_trip(self, du: int, now: float) -> int:
        with self._lock:
            noise = self._rng.normal(0.0, NOISE_PS)
        return round(self.rttc(du, now) + sum(self._deltas_ps[du]) + noise)


class DetectorManagerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], model: WhiteRabbitModel) -> None:
        super().__init__(address, DetectorManagerHandler)
        self.model = model
        self.sessions: dict[str, list[str]] = {}


class DetectorManagerHandler(BaseHTTPRequestHandler):
    server: DetectorManagerServer
    server_version = "km3mon-detector-manager"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        model = self.server.model
        try:
            if url.path.rstrip("/") == BASE:
                self._json(model.paths())
            elif url.path.startswith(BASE + "/"):
                self._json({"value": model.value(url.path[len(BASE) + 1 :])})
            elif url.path == "/monshortdef":
                self._define_session(parse_qs(url.query))
            elif url.path.startswith("/monshort/"):
                name = url.path[len("/monshort/") :]
                paths = self.server.sessions[name]
                now = time.time()
                self._json([{"value": model.value(p, now)} for p in paths])
            else:
                self._reply(404, f"unknown resource {url.path}\n")
        except KeyError as error:
            self._reply(404, f"unknown parameter or session {error}\n")

    def _define_session(self, query: dict[str, list[str]]) -> None:
        name = query.get("name", [""])[0]
        paths = [p for p in query.get("paths", [""])[0].split(",") if p]
        if not name or not paths:
            self._reply(400, "monshortdef needs name= and paths=\n")
            return
        relative = []
        for path in paths:
            if not path.startswith(BASE + "/"):
                self._reply(400, f"unknown parameter {path}\n")
                return
            relative.append(path[len(BASE) + 1 :])
            self.server.model.value(relative[-1])  # KeyError -> 404
        self.server.sessions[name] = relative
        log.info("session %r defined with %d parameters", name, len(relative))
        self._reply(200, "OK")

    def _json(self, data: object) -> None:
        self._reply(200, json.dumps(data), "application/json")

    def _reply(self, status: int, body: str, content_type: str = "text/plain") -> None:
        encoded = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(encoded)))
        self.end_headers()
        self.wfile.write(encoded)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def dus_from_args(detx: Path | None, dus: str | None) -> list[int]:
    if detx is not None:
        from km3mon.detector.detx import read_detx

        return [int(du) for du in read_detx(detx).dus]
    if dus:
        first, _, last = dus.partition("-")
        return list(range(int(first), int(last) + 1)) if last else [int(d) for d in dus.split(",")]
    raise SystemExit("give --detx FILE or --dus 1-21")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "detector-manager",
        help="stand-in for the Detector Manager's HTTP monitoring API (for rttc)",
        description="Serve White Rabbit round-trip parameters of every DU base CLB the way "
        "the Detector Manager does, with noise and a slow drift.",
    )
    parser.add_argument("--detx", type=Path, help="DETX file giving the DUs")
    parser.add_argument("--dus", help="DUs instead of a DETX file: '1-21' or '1,2,5'")
    parser.add_argument("-p", "--port", type=int, default=DEFAULT_PORT, help="port (1302)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import signal

    from km3mon.logs import setup_logging

    setup_logging()
    model = WhiteRabbitModel(dus_from_args(args.detx, args.dus), seed=args.seed)
    server = DetectorManagerServer((args.host, args.port), model)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log.warning(
        "Detector Manager stand-in on http://%s:%d%s for DUs %s",
        args.host,
        args.port,
        BASE,
        ", ".join(map(str, model.dus)),
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
