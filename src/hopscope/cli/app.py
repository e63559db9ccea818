"""The root of the ``hopscope`` command line: options every command shares, and the command
groups, each in a module of its own.

Results go to stdout, progress and diagnostics to stderr; a :class:`HopscopeError` is printed as
``Type: message`` (no traceback) and exits 1.
"""

from __future__ import annotations

import logging
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any

import typer

from hopscope.cli._support import out, reports_errors
from hopscope.cli.alerts import alerts_app
from hopscope.cli.analyze import analyze_command
from hopscope.cli.demo import demo_command
from hopscope.cli.kibana import kibana_app, trace_url
from hopscope.cli.lab import lab_app
from hopscope.cli.process import process_command
from hopscope.cli.simulate import simulate_command
from hopscope.cli.stack import stack_app

try:
    __version__ = version("hopscope")
except PackageNotFoundError:  # pragma: no cover - a source tree without an install
    __version__ = "0.0.0"

app = typer.Typer(
    name="hopscope",
    help="Trace and log analytics for payment systems: OpenTelemetry → Kafka → Elasticsearch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(stack_app, name="stack")
app.add_typer(kibana_app, name="kibana")
app.add_typer(alerts_app, name="alerts")
app.add_typer(lab_app, name="lab")
app.command("trace-url")(trace_url)
app.command("demo")(reports_errors(demo_command))
app.command("simulate")(reports_errors(simulate_command))
app.command("analyze")(reports_errors(analyze_command))
app.command("process")(reports_errors(process_command))


def _version(value: bool) -> None:
    if value:
        out.print(f"hopscope {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            envvar="HOPSCOPE_CONFIG",
            # Typer reads help as rich markup, where "[process]" is a tag and vanishes.
            help="TOML file of option defaults, one table per command, e.g. \\[process] "
            "trace_idle = 3.0 (default: ./hopscope.toml when present). Flags and HOPSCOPE_* "
            "variables still win.",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[
        str,
        typer.Option(
            envvar="HOPSCOPE_LOG_LEVEL",
            help="Diagnostics on stderr from this level: debug, info, warning, error.",
        ),
    ] = "warning",
) -> None:
    """hopscope: where does the time go between the card swipe and the bank's answer?"""
    _configure_logging(log_level)
    defaults = _config_defaults(config)
    if defaults:
        # Click's precedence is exactly ours: flag, then environment, then default_map.
        ctx.default_map = {**(ctx.default_map or {}), **defaults}


# Client libraries whose own lines are shown only with --log-level debug: they log every
# refused connection, retry and missing topic as WARNING or ERROR, often with a traceback,
# while hopscope reports what matters about them in its own words (one line, with a hint).
THIRD_PARTY_LOGGERS = ("kafka", "elastic_transport", "elasticsearch", "urllib3")


def _configure_logging(level: str) -> None:
    """Timestamped diagnostics on stderr (results stay on stdout). The client libraries'
    lines (:data:`THIRD_PARTY_LOGGERS`) are shown only at debug level."""

    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        raise typer.BadParameter(
            f"unknown level {level!r}: debug, info, warning or error", param_hint="--log-level"
        )
    root = logging.getLogger()
    # One handler of ours, however often the CLI runs in one process (tests); handlers that
    # others installed (pytest's capture) stay.
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if number > logging.DEBUG:
        handler.addFilter(_hide_third_party)
    root.addHandler(handler)
    root.setLevel(number)
    for noisy in THIRD_PARTY_LOGGERS:
        # Below debug the loggers still pass warnings on (not to our handler): hopscope's
        # own error messages read the Kafka client's bootstrap failures from them.
        logging.getLogger(noisy).setLevel(logging.NOTSET if number <= logging.DEBUG else
                                          logging.WARNING)  # fmt: skip


def _hide_third_party(record: logging.LogRecord) -> bool:
    """Handler filter: False for the lines of :data:`THIRD_PARTY_LOGGERS` and their children."""
    name = record.name
    return not any(name == noisy or name.startswith(noisy + ".") for noisy in THIRD_PARTY_LOGGERS)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record, not at creation: a
    test runner replaces and closes the stream between runs."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _config_defaults(path: Path | None) -> dict[str, Any]:
    import tomllib

    if path is None:
        path = Path("hopscope.toml")
        if not path.is_file():
            return {}
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise typer.BadParameter(f"cannot read {path}: {error}", param_hint="--config") from None
    if not all(isinstance(table, dict) for table in document.values()):
        raise typer.BadParameter(
            f"{path}: expected one table per command, e.g. [process]", param_hint="--config"
        )
    # Option names as written on the command line (trace-idle) or in Python (trace_idle).
    return {
        command: {key.replace("-", "_"): value for key, value in table.items()}
        for command, table in document.items()
    }


def main() -> None:
    """Entry point of the ``hopscope`` script."""
    app()
