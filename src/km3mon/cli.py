"""The `km3mon` console script: one subcommand per program and tool of the registry
(``km3mon.commands`` builds the parser and runs the command).

Under supervisord (``KM3MON_FORKSERVER`` set), a program marked ``forked`` in the registry runs
as a fork of the fork server (``km3mon.runtime.forkserver``) and this process stands in for it.
"""

from __future__ import annotations

import os
import sys

from km3mon import registry
from km3mon.commands import command_word, run


def main(argv: list[str] | None = None) -> int:
    """Run a command; a program marked ``forked`` as a fork of the fork server when
    ``KM3MON_FORKSERVER`` names one (supervisord's setting), else in this process."""
    argv = sys.argv[1:] if argv is None else argv
    socket_path = os.environ.get(registry.FORKSERVER_ENV)
    if socket_path and _forked(argv):
        from km3mon.runtime import forkserver

        code = forkserver.run_served(argv, socket_path)
        if code is not None:
            return code
    return run(argv)


def _forked(argv: list[str]) -> bool:
    program = registry.BY_NAME.get(command_word(argv))
    asks_help = any(word in ("-h", "--help") for word in argv)
    return program is not None and program.forked and not asks_help
