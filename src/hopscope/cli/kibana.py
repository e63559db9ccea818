"""``hopscope kibana import|export|regenerate`` and ``hopscope trace-url``.

Registered on the root app by :mod:`hopscope.cli`; the Kibana code itself lives in
:mod:`hopscope.dashboards.kibana` (it needs no extra dependency, only the standard library).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from hopscope.cli._support import err, out, reports_errors
from hopscope.core.env import env_optional
from hopscope.core.settings import DEFAULT_INDEX_PREFIX

kibana_app = typer.Typer(
    help="Kibana data views, saved searches and dashboards for hopscope's indices.",
    no_args_is_help=True,
)

KIBANA_FILE = Path("kibana") / "hopscope.ndjson"

IndexPrefix = Annotated[
    str,
    typer.Option(
        envvar="HOPSCOPE_INDEX_PREFIX", help="The processors' Elasticsearch index prefix."
    ),
]
KibanaUrl = Annotated[
    str, typer.Option("--url", envvar="HOPSCOPE_KIBANA_URL", help="Kibana's base URL.")
]
Space = Annotated[
    str | None,
    typer.Option(help="Kibana space id (default: the default space).", show_default=False),
]


@kibana_app.command("import")
@reports_errors
def kibana_import(
    url: KibanaUrl = "http://127.0.0.1:5601",
    api_key: Annotated[
        str | None,
        typer.Option(envvar="HOPSCOPE_KIBANA_API_KEY", help="Encoded API key.", show_default=False),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            help="Basic-auth user (password: env HOPSCOPE_KIBANA_PASSWORD, else prompted).",
            show_default=False,
        ),
    ] = None,
    space: Space = None,
    file: Annotated[
        Path | None,
        typer.Option(
            help="Import this NDJSON instead of the assets generated now.",
            exists=True,
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    index_prefix: IndexPrefix = DEFAULT_INDEX_PREFIX,
) -> None:
    """Import the data views, searches, visualizations and dashboards (overwriting)."""
    from hopscope.dashboards.kibana import import_saved_objects, ndjson

    password = None
    if user:
        password = env_optional("HOPSCOPE_KIBANA_PASSWORD")
        if password is None:
            password = typer.prompt(f"Kibana password for {user}", hide_input=True)
    text = file.read_text(encoding="utf-8") if file else ndjson(prefix=index_prefix)
    try:
        result = import_saved_objects(
            url, text, api_key=api_key, user=user, password=password, space=space
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    for obj in result.objects:
        verb = "overwritten" if obj.overwritten else "created"
        out.print(f"{verb:11} {obj.type:13} {obj.id}  {obj.title}", markup=False, highlight=False)
    out.print(
        f"imported {len(result.objects)} objects into {url}"
        f"{f' (space {space})' if space else ''}: {len(result.created)} created, "
        f"{len(result.overwritten)} overwritten",
        markup=False, highlight=False, soft_wrap=True,
    )  # fmt: skip


@kibana_app.command("export")
@reports_errors
def kibana_export(
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Write here instead of stdout.", dir_okay=False, show_default=False
        ),
    ] = None,
    index_prefix: IndexPrefix = DEFAULT_INDEX_PREFIX,
) -> None:
    """Write the saved objects as Kibana import NDJSON (stdout, or --out FILE)."""
    from hopscope.dashboards.kibana import ndjson

    text = ndjson(prefix=index_prefix)
    if out_file is None:
        sys.stdout.write(text)
        return
    out_file.write_text(text, encoding="utf-8")
    err.print(Text(f"wrote {out_file}"))


@kibana_app.command("regenerate")
@reports_errors
def kibana_regenerate(
    deploy_dir: Annotated[
        Path, typer.Option(help="The repository's deploy/ directory.", file_okay=False)
    ] = Path("deploy"),
) -> None:
    """Rewrite the generated deploy assets: Kibana NDJSON, Grafana dashboard, Prometheus config."""
    from hopscope.dashboards import grafana
    from hopscope.dashboards.kibana import ndjson

    if not (deploy_dir / "compose.yaml").is_file():
        raise typer.BadParameter(
            f"{deploy_dir} has no compose.yaml: run from the repository root or pass "
            "--deploy-dir", param_hint="--deploy-dir",
        )  # fmt: skip
    kibana = deploy_dir / KIBANA_FILE
    kibana.parent.mkdir(parents=True, exist_ok=True)
    kibana.write_text(ndjson(), encoding="utf-8")
    for path in [kibana, *grafana.write_deploy_files(deploy_dir)]:
        out.print(Text(f"wrote {path}"))


def trace_url_command(
    trace_id: Annotated[str, typer.Argument(help="Trace id: 32 hex digits.")],
    kibana_url: KibanaUrl = "http://127.0.0.1:5601",
    space: Space = None,
    index_prefix: IndexPrefix = DEFAULT_INDEX_PREFIX,
    since: Annotated[
        str, typer.Option("--from", help="Start of the time range (date math or ISO 8601).")
    ] = "now-7d",
    until: Annotated[str, typer.Option("--to", help="End of the time range.")] = "now",
) -> None:
    """Print a Kibana Discover link to one trace's spans and logs."""
    from hopscope.dashboards.kibana import discover_url

    try:
        link = discover_url(
            kibana_url, trace_id, index_prefix=index_prefix, space=space,
            time_range=(since, until),
        )  # fmt: skip
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    sys.stdout.write(link + "\n")


trace_url = reports_errors(trace_url_command)
