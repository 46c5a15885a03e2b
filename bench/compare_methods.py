"""The method comparison: contextual, RL^2, FO-MAML, segment-agnostic, oracle and hand-written
policies on the same users, with one budget and the same seeds (``configs/compare.toml``).

It runs ``segdial compare`` (training every method for every seed in two worker processes, then
measuring within one conversation, few-shot on held-out segments and sample efficiency), prints
the tables and writes the figures to JSON, with the markdown tables and two PNGs next to it
(``NAME.md``, ``NAME_efficiency.png``, ``NAME_fewshot.png``). Runs live in ``runs/compare_methods``
(``runs/compare_methods-quick`` with --quick); a killed run resumes when started again.

Usage: flock /tmp/segdial-cpu.lock nice -n 10 python bench/compare_methods.py [--quick] [--json PATH] [--jobs N]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import machine, parser

from segdial import cli

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = parser("compare_methods", __doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: the config's, 2)")
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "compare.toml", help="comparison config")
    args = p.parse_args()
    out = ROOT / "runs" / ("compare_methods-quick" if args.quick else "compare_methods")
    argv = ["compare", "--config", str(args.config), "--out", str(out), "--json", str(args.json)]
    argv += ["--quick"] if args.quick else []
    argv += ["--jobs", str(args.jobs)] if args.jobs is not None else []
    try:
        cli.app(argv, standalone_mode=False)
    except cli.typer.Exit as e:
        sys.exit(e.exit_code)
    figures = json.loads(args.json.read_text())
    figures["machine"] = {**machine(), **figures.get("machine", {})}
    args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
