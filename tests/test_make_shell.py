"""`make shell` (README "Set up and run") gives a shell where `hopscope` is on PATH."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.skipif(
    Path(sys.executable).parent != VENV_BIN, reason="runs in the repository's own .venv"
)
def test_make_shell_puts_hopscope_on_path() -> None:
    # PATH as after `make demo` in a fresh terminal: no virtualenv on it.
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != VENV_BIN)
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env |= {"PATH": path, "SHELL": "/bin/sh"}
    script = 'command -v hopscope; echo "$VIRTUAL_ENV"; hopscope --version\n'
    result = subprocess.run(["make", "-s", "shell"], cwd=ROOT, env=env, input=script,
                            capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert str(VENV_BIN / "hopscope") in lines
    assert str(ROOT / ".venv") in lines
    assert any(line.startswith("hopscope ") for line in lines)
