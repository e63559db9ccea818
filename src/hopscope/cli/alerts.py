"""``hopscope alerts generate``: Prometheus recording and alerting rules from the SLOs.

Registered on the root app by :mod:`hopscope.cli.app`; the rules themselves are built by
:mod:`hopscope.dashboards.alerts` from the ``[slo.<name>]`` tables of the ``--config`` file
(``./hopscope.toml`` when present) or the payment-path defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from hopscope.cli._support import out, reports_errors

alerts_app = typer.Typer(
    help="Prometheus alerting: SLO burn rates, failovers, coordination, pipeline health.",
    no_args_is_help=True,
)


@alerts_app.command("generate")
@reports_errors
def alerts_generate(
    ctx: typer.Context,
    deploy_dir: Annotated[
        Path,
        typer.Option(
            help="The deploy/ directory: rules go to prometheus/rules/, Alertmanager's "
            "configuration to alertmanager/ (with --scale: the rule files only, into it).",
            file_okay=False,
        ),
    ] = Path("deploy"),
    runbook_url: Annotated[
        str, typer.Option(help="Base of every alert's runbook_url (a section anchor follows).")
    ] = "docs/RUNBOOK.md",
    scale: Annotated[
        float,
        typer.Option(
            help="Test only: multiply every window and `for` duration (1/60 turns an hour "
            "into a minute). Production rules use 1.",
            min=0.0001,
            max=1.0,
        ),
    ] = 1.0,
) -> None:
    """Write the recording and alerting rules and Alertmanager's configuration."""
    from hopscope.dashboards.alerts import write_deploy_files, write_rules
    from hopscope.processors.slo import load_slos

    config = ctx.find_root().params.get("config")
    try:
        slos = load_slos(config)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--config") from None
    if scale == 1:
        written = write_deploy_files(deploy_dir, slos, runbook=runbook_url)
    else:
        # Test rules never overwrite the committed ones by accident.
        written = write_rules(deploy_dir, slos, scale=scale, runbook=runbook_url)
    for path in written:
        out.print(Text(f"wrote {path}"))
