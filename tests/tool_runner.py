"""Runs a tool of this checkout in a subprocess, importing this checkout's magnets_tf.

The package is installed (editable) elsewhere too; PYTHONPATH puts this checkout first,
so a test cannot silently run another copy.
"""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tool_env(**extra):
    """The environment of a tool run: quiet TF, this checkout first on the import path."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": path, **extra}


def tool_command(name, *args):
    """argv of `python tools/<name>.py args...` (the documented way to run a tool)."""
    return [sys.executable, str(ROOT / "tools" / f"{name}.py"), *map(str, args)]


def run_tool(name, *args, env=None, timeout=600, cwd=None):
    """Runs tools/<name>.py to completion; returns the CompletedProcess (text output)."""
    return subprocess.run(tool_command(name, *args), env=tool_env(**(env or {})), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
