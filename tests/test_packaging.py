"""The built wheels install on their own: the SDK alone stays light, and the CLI with its
extras carries what the launcher needs."""

import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[1]
# Every distribution of the workspace: the layers, then the root (CLI, stack, dashboards).
PROJECTS = [ROOT / "core", ROOT / "ingest", ROOT / "processors", ROOT / "analysis", ROOT]


def _fresh_venv(where: Path) -> Path:
    venv.create(where, with_pip=True)
    return where / "bin" / "python"


def _probe(python: Path, code: str, cwd: Path) -> list[str]:
    # Run from elsewhere, so nothing of the checkout can be imported by accident.
    return subprocess.run(
        [python, "-c", code], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.split()


def test_wheels_install_and_run(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    for project in PROJECTS:
        subprocess.run(
            [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(project)],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
    wheels = {path.name.split("-")[0] for path in dist.glob("*.whl")}
    assert wheels == {"hopscope", "hopscope_core", "hopscope_ingest", "hopscope_processors",
                      "hopscope_analysis"}  # fmt: skip

    # A payment service installs the SDK alone: no polars, no Elasticsearch, no CLI.
    sdk = _fresh_venv(tmp_path / "sdk")
    subprocess.run(
        [sdk, "-m", "pip", "install", "-q", "--find-links", str(dist), "hopscope-ingest"],
        check=True, timeout=600,
    )  # fmt: skip
    probe = _probe(sdk, (
        "import importlib.util as u, hopscope.ingest, hopscope.core.settings\n"
        "print(*(u.find_spec(m) is None for m in ('polars', 'elasticsearch', 'typer')))\n"
        "print(u.find_spec('hopscope.cli') is None, u.find_spec('hopscope.stack') is None)\n"
    ), tmp_path)  # fmt: skip
    assert probe == ["True"] * 5

    # The CLI with every layer, as an operator installs it.
    full = _fresh_venv(tmp_path / "full")
    subprocess.run(
        [full, "-m", "pip", "install", "-q", "--find-links", str(dist), "hopscope[all]"],
        check=True, timeout=600,
    )  # fmt: skip
    help_text = subprocess.run(
        [full.parent / "hopscope", "--help"], cwd=tmp_path, capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    assert "stack" in help_text and "demo" in help_text
    kafka_version, es_version = _probe(full, (
        "import hopscope.ingest, hopscope.processors, hopscope.analysis, hopscope.dashboards\n"
        "from hopscope.stack.artifacts import pinned_versions\n"
        "print(pinned_versions().kafka, pinned_versions().elasticsearch)\n"
    ), tmp_path)  # fmt: skip
    assert kafka_version.startswith("4.") and es_version.startswith("8.19.")
