"""A bounded-time client for the KM3NeT database (the web API km3db talks to).

Not km3db itself: its ``DBManager.get`` retries ten times with 30 s sleeps and asks for a password
on the terminal when no credentials are set, so a monitor without the DB would hang for minutes.
This client finds credentials the km3db way (``$KM3NET_DB_COOKIE``, ``$KM3NET_DB_COOKIE_FILE``,
``~/.km3netdb_cookie``, ``$KM3NET_DB_USERNAME``/``$KM3NET_DB_PASSWORD``), never prompts, and
bounds every request, DNS lookup included, by running it in a daemon thread with a deadline.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from km3mon.detector.errors import DetectorError

DEFAULT_URL = "https://km3netdbweb.in2p3.fr"
DEFAULT_TIMEOUT_S = 5.0
COOKIE_FILE = Path("~/.km3netdb_cookie")

#: APIv2 calibration types → the ``detx`` endpoint's query parameter (as km3db maps them).
CALIBRATION_PARAMETERS = {
    "PMT_T0_CALIBRATION": "tcal",
    "DOM_POSITION_CALIBRATION": "pcal",
    "DOM_ROTATION_CALIBRATION": "rcal",
    "ACOUSTIC_T0_CALIBRATION": "acal",
    "COMPASS_CALIBRATION": "ccal",
    "STATUS_CALIBRATION": "scal",
}

OPERATOR_HINT = (
    "give a DETX file (--detx FILE or $DETX) and local calibration files, "
    "or make the KM3NeT database reachable (credentials the km3db way, e.g. $KM3NET_DB_COOKIE)"
)


class DatabaseUnavailable(DetectorError):
    """The database cannot answer now: no credentials, no network, timeout or an error page."""


class Database:
    """Text queries against the KM3NeT database web API, each finished within ``timeout_s``."""

    def __init__(
        self,
        *,
        url: str = DEFAULT_URL,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._environ = os.environ if environ is None else environ
        self._cookie: str | None = None

    def __repr__(self) -> str:
        return f"Database(url={self.url!r}, timeout_s={self.timeout_s})"

    def get_text(self, path: str) -> str:
        """The body of ``URL/path``; raises DatabaseUnavailable instead of hanging or prompting."""
        cookie = self._session_cookie()
        request = urllib.request.Request(f"{self.url}/{path}", headers={"Cookie": f"sid={cookie}"})
        text = _bounded(lambda: _fetch(request, self.timeout_s), self.timeout_s, path)
        if text.startswith("ERROR"):
            raise DatabaseUnavailable(f"KM3NeT database refused {path!r}: {text[:200].strip()}")
        return text

    def stream(self, name: str, **selectors: str | int) -> str:
        """A StreamDS table as tab-separated text with a header line."""
        query = urllib.parse.urlencode(selectors)
        return self.get_text(f"streamds/{name}.txt?{query}")

    def detx(self, det_id: int, run: int | None = None) -> str:
        """DETX text (v5) of a detector, with the calibrations ranked first for ``run`` if given."""
        sets = {parameter: "0" for parameter in CALIBRATION_PARAMETERS.values()}
        if run is not None:
            sets.update(self._run_calibrations(det_id, run))
        query = urllib.parse.urlencode({**sets, "v": 5})
        return self.get_text(f"detx/{det_id}?{query}")

    def det_oid(self, det_id: int) -> str:
        """The detector's object id (e.g. D_ORCA006) from its serial number (e.g. 49)."""
        for row in parse_table(self.stream("detectors"), "detectors"):
            if row.get("SERIALNUMBER") == str(det_id):
                return row["OID"]
        raise DatabaseUnavailable(f"detector {det_id} is not in the database's detector list")

    def _run_calibrations(self, det_id: int, run: int) -> dict[str, str]:
        query = urllib.parse.urlencode({"DetOId": self.det_oid(det_id), "Run": run, "Ranking": 1})
        text = self.get_text(f"apiv2.1.0/RunCalibration/s?{query}")
        try:
            response = json.loads(text)
            if response["Error"]["Code"] != "OK":
                raise DatabaseUnavailable(f"RunCalibration for run {run}: {response['Error']}")
            return {
                CALIBRATION_PARAMETERS[entry["CalibrationType"]]: str(entry["CalibrationId"])
                for entry in response["Data"]
                if entry["CalibrationType"] in CALIBRATION_PARAMETERS
            }
        except (ValueError, KeyError, TypeError) as err:
            raise DatabaseUnavailable(f"unexpected RunCalibration answer for run {run}") from err

    def _session_cookie(self) -> str:
        if self._cookie is None:
            self._cookie = self._find_cookie()
        return self._cookie

    def _find_cookie(self) -> str:
        env = self._environ
        if cookie := env.get("KM3NET_DB_COOKIE"):
            return cookie.split()[-1]
        for candidate in (env.get("KM3NET_DB_COOKIE_FILE"), COOKIE_FILE.expanduser()):
            if candidate and Path(candidate).is_file():
                content = Path(candidate).read_text().split()
                if content:
                    return content[-1]
        user, password = env.get("KM3NET_DB_USERNAME"), env.get("KM3NET_DB_PASSWORD")
        if not (user and password):
            raise DatabaseUnavailable(f"no KM3NeT database credentials; {OPERATOR_HINT}")
        query = urllib.parse.urlencode({"usr": user, "pwd": password, "persist": "y"})
        request = urllib.request.Request(f"{self.url}/home.htm?{query}")
        answer = _bounded(lambda: _fetch(request, self.timeout_s), self.timeout_s, "login")
        cookie = answer.split("sid=")[-1].strip()
        if not cookie or " " in cookie:
            raise DatabaseUnavailable("KM3NeT database login failed: wrong username or password?")
        return cookie


def parse_table(text: str, what: str) -> list[dict[str, str]]:
    """Rows of a StreamDS tab-separated table as dicts keyed by the header's column names."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise DetectorError(f"{what}: empty table, expected a header line")
    header = lines[0].split("\t")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        if len(cells) != len(header):
            raise DetectorError(f"{what}:{number}: {len(cells)} columns, header has {len(header)}")
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def _fetch(request: urllib.request.Request, timeout_s: float) -> str:
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise DatabaseUnavailable(f"KM3NeT database not reachable: {err}; {OPERATOR_HINT}") from err


def _bounded(call: Callable[[], str], timeout_s: float, what: str) -> str:
    """Run ``call`` in a daemon thread; give up after ``timeout_s`` even if DNS hangs."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as err:  # handed over to the caller's thread
            outcome["error"] = err

    worker = threading.Thread(target=target, name=f"km3db {what}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise DatabaseUnavailable(
            f"KM3NeT database did not answer {what!r} within {timeout_s:g} s; {OPERATOR_HINT}"
        )
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
