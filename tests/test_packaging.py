"""The built wheel installs on its own and carries what the launcher needs."""

import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_and_runs(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    wheel = next(dist.glob("hopscope-*.whl"))

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python, hopscope = env_dir / "bin" / "python", env_dir / "bin" / "hopscope"
    subprocess.run([python, "-m", "pip", "install", "-q", str(wheel)], check=True, timeout=600)

    # Run from elsewhere, so nothing of the checkout can be imported by accident.
    help_text = subprocess.run(
        [hopscope, "--help"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    assert "stack" in help_text and "demo" in help_text

    probe = subprocess.run(
        [python, "-c", (
            "import importlib.util as u, hopscope.ingest, hopscope.processors, hopscope.analysis\n"
            "from hopscope.stack.artifacts import pinned_versions\n"
            "print(pinned_versions().kafka, pinned_versions().elasticsearch)\n"
            "print(u.find_spec('polars') is None, u.find_spec('elasticsearch') is None)\n"
        )],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    kafka_version, es_version, no_polars, no_es = probe
    assert kafka_version.startswith("4.") and es_version.startswith("8.19.")
    # The SDK install stays light: polars and Elasticsearch come only with the extras.
    assert (no_polars, no_es) == ("True", "True")
