"""``segdial serve`` that cannot start says why in one line on stderr, as ``segdial actions`` does, and
exits with 2 for a bad setting (a missing or corrupt checkpoint) and 1 for a failure outside (an
unreachable database), with one worker and with two (the first worker that fails says it, once).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dialogue.service import db
from dialogue.service.settings import DEFAULT_MODEL


def corrupt_checkpoint(folder: Path) -> Path:
    """A copy of the shipped policy whose weights file is cut short."""
    copy = folder / "corrupt"
    shutil.copytree(DEFAULT_MODEL, copy)
    weights = copy / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    return copy


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("problem", ["missing model", "corrupt checkpoint", "unreachable database"])
def test_serve_refuses_bad_settings_in_one_line(problem: str, workers: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "SEGDIAL_WORKERS": workers,
        "SEGDIAL_PORT": "0",
        "SEGDIAL_DATABASE_URL": f"sqlite:///{tmp_path}/s.db",
    }
    db.upgrade(env["SEGDIAL_DATABASE_URL"])  # migrated first: two workers would race to migrate a new file
    expected, status = "error: cannot start segdial: ", 2
    if problem == "missing model":
        env["SEGDIAL_MODEL_PATH"] = str(tmp_path / "nowhere")
        expected += f"no checkpoint at {tmp_path / 'nowhere'}"
    elif problem == "corrupt checkpoint":
        corrupt = corrupt_checkpoint(tmp_path)
        env["SEGDIAL_MODEL_PATH"] = str(corrupt)
        expected += f"{corrupt / 'weights.safetensors'} is corrupt"
    else:
        env["SEGDIAL_DATABASE_URL"] = "postgresql+psycopg://postgres:s3cret@127.0.0.1:9/none?connect_timeout=2"
        expected, status = expected + "cannot reach the database postgresql+psycopg://postgres:***@127.0.0.1:9", 1
    done = subprocess.run(
        [sys.executable, "-m", "segdial.cli", "serve"], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == status, done.stderr
    assert done.stderr.splitlines() == [done.stderr.strip()], done.stderr  # one line, however many workers
    assert done.stderr.startswith(expected), done.stderr
    assert "s3cret" not in done.stderr
