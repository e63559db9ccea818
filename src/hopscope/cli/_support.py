"""What every ``hopscope`` command module shares: the consoles and the error reporting.

Its own module so that command modules (``hopscope.cli.kibana``...) and the root
``hopscope.cli`` import it without importing each other (``python -m hopscope.cli`` runs the root
as ``__main__``, which a module importing ``hopscope.cli`` would load a second time).
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from hopscope.core.errors import HopscopeError

P = ParamSpec("P")
R = TypeVar("R")

out = Console()
err = Console(stderr=True)


def hopscope_command() -> str:
    """How to run hopscope again from the user's shell, for the commands hints print.

    ``hopscope`` when that name on PATH is the program running now; else the absolute path of
    the running console script (``make demo`` calls ``.venv/bin/hopscope``, which is not on
    PATH until the environment is activated); else, when run as ``python -m hopscope.cli`` or
    embedded, this interpreter with ``-m hopscope.cli``. The result is shell-quoted, so a hint
    built from it runs as printed.
    """
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is not None and script.name == "hopscope" and script.is_file():
        on_path = shutil.which("hopscope")
        if on_path is not None and Path(on_path).resolve() == script.resolve():
            return "hopscope"
        return shlex.quote(str(script.absolute()))
    return f"{shlex.quote(sys.executable)} -m hopscope.cli"


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Print errors as ``Type: message`` on stderr and exit 1, without a traceback.

    hopscope's own errors say what to do; a library's error (Kafka, Elasticsearch) is shown in
    its own words, with its traceback only under ``HOPSCOPE_DEBUG=1``.
    """

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except HopscopeError as error:
            # Messages quote logs and paths: never let rich read them as markup.
            err.print(
                Text.assemble((type(error).__name__, "bold red"), f": {error}"), soft_wrap=True
            )
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise
        except Exception as error:
            if os.environ.get("HOPSCOPE_DEBUG"):
                raise
            err.print(
                Text.assemble((type(error).__name__, "bold red"), f": {error}"), soft_wrap=True
            )
            err.print("(set HOPSCOPE_DEBUG=1 for the traceback)", style="dim")
            raise typer.Exit(1) from None

    return wrapper
