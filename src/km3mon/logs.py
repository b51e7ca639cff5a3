"""One log format for every process, set up by each command when it starts.

Below every command module (they import it), so that no module imports the CLI back.
"""

from __future__ import annotations

import logging
import sys
import time


def setup_logging(level: int | str = logging.INFO) -> None:
    """UTC time, level, logger name, message, on stderr (supervisord's log of the program)."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        stream=sys.stderr,
    )
    logging.Formatter.converter = time.gmtime
