"""The registry is the one list of programs: supervisord's configuration, the CLI, the page
layouts, the status page and each program's module agree with it.

Each test collects every disagreement and names the file to edit, so a program added in one
place fails here with the list of places still missing it.
"""

from __future__ import annotations

import argparse
import configparser
import importlib
import inspect
import re
import tempfile
from pathlib import Path

from km3mon import registry
from km3mon.demo import write_folder
from km3mon.web.layouts import DEFAULT_PAGES


def supervisord_programs() -> dict[str, tuple[str | None, str, str]]:
    """Every program an installation can run: name -> (group, command, where it is defined).

    The supervisord.conf that `km3mon demo` writes: the operator's template with k40 switched
    on, plus the shore-station stand-ins, once with the simulator and once with a replay.
    """
    sources = {}
    with tempfile.TemporaryDirectory() as folder:
        for source, replay in (("simulator", None), ("replay", ["recording.dat"])):
            options = argparse.Namespace(detx=None, replay=replay, scenario="", event_rate=None)
            write_folder(Path(folder), options)
            conf = (Path(folder) / "supervisord.conf").read_text()
            sources[f"supervisord_template.conf or demo.py (demo with the {source})"] = conf
    programs: dict[str, tuple[str | None, str, str]] = {}
    for where, text in sources.items():
        config = configparser.ConfigParser(interpolation=None, strict=False)
        config.read_string(text)
        group_of = {
            name.strip(): section.removeprefix("group:")
            for section in config.sections()
            if section.startswith("group:")
            for name in config[section]["programs"].split(",")
        }
        for section in config.sections():
            if section.startswith("program:"):
                name = section.removeprefix("program:")
                command = re.sub(r"%\(ENV_(\w+)\)s", r"$\1", config[section]["command"])
                programs[name] = (group_of.get(name), command, where)
    return programs


def test_every_supervisord_program_is_in_the_registry_with_its_group_and_command() -> None:
    problems = []
    for name, (group, command, where) in supervisord_programs().items():
        program = registry.BY_NAME.get(name)
        if program is None:
            problems.append(
                f"{name} ({where}) is not in registry.PROGRAMS: the status page shows it as "
                "'no record kept' and no missing plot names it"
            )
            continue
        if program.group != group:
            problems.append(f"{name}: group {group} in {where}, {program.group} in the registry")
        words = program.command.split()[:2]  # `km3mon reco`, or `$LIGIER_CMD`
        if command.split()[: len(words)] != words:
            problems.append(f"{name}: `{command}` in {where}, `{program.command}` in the registry")
    assert not problems, "\n".join(problems)


def test_every_registry_program_has_a_supervisord_program() -> None:
    defined = supervisord_programs()
    missing = [
        f"{program.name} (group {program.group}) is in no [program:{program.name}] of "
        "supervisord_template.conf (or demo.py's DAQ_GROUP for the shore-station stand-ins)"
        for program in registry.PROGRAMS
        if program.name not in defined
    ]
    assert not missing, "\n".join(missing)


def registered_parsers(module_name: str) -> dict[str, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    importlib.import_module(module_name).register(subparsers)
    return dict(subparsers.choices)


def test_every_command_is_registered_by_its_module() -> None:
    problems = []
    for name, command in registry.commands().items():
        parsers = registered_parsers(command.module)
        if name not in parsers:
            problems.append(f"`km3mon {name}`: {command.module}.register adds {sorted(parsers)}")
    for program in registry.PROGRAMS:
        words = program.command.split()
        if words[0] == "km3mon" and registry.commands()[words[1]].module != program.module:
            problems.append(
                f"{program.name}: module {program.module}, but `km3mon {words[1]}` is "
                f"{registry.commands()[words[1]].module}"
            )
    assert not problems, "\n".join(problems)


def monitor_of(program: registry.Program) -> type | None:
    """The runtime Monitor class of a program's module named like the program, if any."""
    from km3mon.runtime.monitor import Monitor

    module = importlib.import_module(program.module)
    for _, value in inspect.getmembers(module, inspect.isclass):
        if issubclass(value, Monitor) and getattr(value, "name", None) == program.name:
            return value
    return None


def test_tags_and_freshness_records_match_the_programs() -> None:
    """What the dashboard says about a program (its tags; 'no record' or 'no record kept' on
    the status page) is what its module does."""
    problems = []
    for program in registry.PROGRAMS:
        monitor = monitor_of(program)
        source = inspect.getsource(importlib.import_module(program.module))
        writes = monitor is not None or "Freshness(" in source
        if writes != program.writes_freshness:
            problems.append(
                f"{program.name}: writes_freshness={program.writes_freshness} in the registry, "
                f"but {program.module} {'writes' if writes else 'writes no'} freshness record"
            )
        if monitor is not None and tuple(monitor.tags) != program.tags:
            problems.append(
                f"{program.name}: tags {program.tags} in the registry, "
                f"{tuple(monitor.tags)} in {program.module}"
            )
    assert not problems, "\n".join(problems)


def shown_plots() -> dict[str, set[str]]:
    """Plot name (or per-DU pattern) -> slugs of the pages showing it, summaries included."""
    layouts = {page.slug: page.rows for page in DEFAULT_PAGES}
    layouts["du"] = [[name.replace("{du}", "*") for name in row] for row in registry.DU_PAGE]
    shown: dict[str, set[str]] = {}
    for slug, rows in layouts.items():
        for name in (name for row in rows for name in row):
            shown.setdefault(name, set()).add(slug)
            if "*" in name and (summary := registry.summary_of(name)) and slug != "du":
                shown.setdefault(summary, set()).add(slug)
    return shown


def test_every_plot_on_a_page_has_a_producer_that_lists_the_page() -> None:
    problems = []
    for plot, slugs in shown_plots().items():
        program = registry.producer_of(plot)
        if program is None:
            problems.append(f"{plot} (pages {sorted(slugs)}) is no output of any program")
            continue
        for slug in sorted(slugs - set(program.pages)):
            problems.append(f"{plot} is on page {slug}, not in {program.name}'s pages")
    assert not problems, "\n".join(problems)


def test_every_output_and_page_of_a_program_is_on_the_dashboard() -> None:
    from km3mon.web.app import create_app
    from km3mon.web.site import Site

    with tempfile.TemporaryDirectory() as folder:
        app = create_app(Site(Path(folder), Path(folder)))
    paths = {route.path for route in app.routes}
    layouts = {page.slug for page in DEFAULT_PAGES} | {"du"}
    shown = shown_plots()
    problems = []
    for program in registry.PROGRAMS:
        for output in program.outputs:
            if output not in shown:
                problems.append(
                    f"{output} ({program.name}) is on no page: add it to web/layouts.py"
                )
        for slug in program.pages:
            if slug not in layouts and not {f"/{slug}", f"/{slug}.html"} & paths:
                problems.append(
                    f"{program.name}'s page {slug} is no layout (web/layouts.py) and no route"
                )
    assert not problems, "\n".join(problems)
