"""``segdial serve`` that cannot start says why in one line on stderr and exits with 2, as
``segdial actions`` does: a bad ``SEGDIAL_MODEL_PATH``, a corrupt checkpoint, an unreachable
database, with one worker and with two.
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
    expected = "error: cannot start segdial: "
    if problem == "missing model":
        env["SEGDIAL_MODEL_PATH"] = str(tmp_path / "nowhere")
        expected += f"no checkpoint at {tmp_path / 'nowhere'}"
    elif problem == "corrupt checkpoint":
        corrupt = corrupt_checkpoint(tmp_path)
        env["SEGDIAL_MODEL_PATH"] = str(corrupt)
        expected += f"{corrupt / 'weights.safetensors'} is corrupt"
    else:
        env["SEGDIAL_DATABASE_URL"] = "postgresql+psycopg://postgres@127.0.0.1:9/none?connect_timeout=2"
        expected += "(psycopg.OperationalError)"
    done = subprocess.run(
        [sys.executable, "-m", "segdial.cli", "serve"], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors and all(line == errors[0] for line in errors), done.stderr  # each worker says the same line
    assert expected in errors[0], errors[0]
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) <= 1 + 2 * int(workers), done.stderr
