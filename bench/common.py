"""Shared plumbing of the benchmark scripts: arguments, the JSON file, the machine description."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def parser(name: str, description: str) -> argparse.ArgumentParser:
    """The arguments every benchmark takes: --quick and --json PATH."""
    p = argparse.ArgumentParser(prog=f"bench/{name}.py", description=description)
    p.add_argument("--quick", action="store_true", help="a short run (smaller samples) to check that it works")
    p.add_argument("--json", type=Path, default=RESULTS / f"{name}.json", help="where to write the figures")
    return p


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "commit": commit,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_json(path: Path, figures: dict[str, Any]) -> None:
    """Write the figures with the machine description; print where they went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **figures}, indent=2, default=float) + "\n")
    print(f"figures written to {path}")


def check_line(name: str, ok: bool, detail: str) -> dict[str, Any]:
    """Print a PASS/FAIL line for a bar and return it as a JSON record."""
    print(f"[{'PASS' if ok else 'FAIL'}] {name}: {detail}")
    return {"name": name, "pass": bool(ok), "detail": detail}
