"""Calibration of the segment probabilities on simulated held-in users, as ``segdial report`` measures it.

For each seed: ``segdial report --simulate``'s path plays N users of every training segment with
the checkpoint (greedy acts, the card's domain and turn limit), logs them to a SQLite database in
the service's tables, and ``dialogue.analytics.calibration`` computes the top-label expected
calibration error (15 equal-width bins) over every read-out (every user turn that updated the
belief). Also the ECE after 1, 2, 3 ... user turns, and the wall time of the whole report
(simulation, figures, page). Bar: ECE <= 0.05.

Usage: python bench/report_calibration.py [--quick] [--json PATH] [--checkpoint models/default]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from common import check_line, parser, write_json

from dialogue.analytics import ECE_BAR, Window
from segdial.reporting import make_report, simulate_to_database

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = parser("report_calibration", __doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=ROOT / "models" / "default")
    args = p.parse_args()
    torch.set_num_threads(1)
    per_segment, seeds = (300, [0]) if args.quick else (2000, [0, 1, 2])
    runs = []
    print(
        f"{'seed':>4} {'users/segment':>13} {'read-outs':>9} {'ECE':>7} {'accuracy':>8} "
        f"{'confidence':>10} {'wall s':>7}"
    )
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            url = f"sqlite:///{Path(tmp) / 'simulation.db'}"
            sim = simulate_to_database(args.checkpoint, url, per_segment, seed=seed)
            report = make_report(Path(tmp) / "report", url, Window(), model=args.checkpoint, description="bench")
            wall = time.perf_counter() - started
        cal = report.figures["calibration"]
        runs.append(
            {
                "seed": seed,
                "segments": sim["segments"],
                "users_per_segment": sim["conversations_per_segment"],
                "readouts": cal["readouts"],
                "ece": cal["ece"],
                "accuracy": cal["accuracy"],
                "confidence": cal["confidence"],
                "by_turn": cal["by_turn"],
                "report_wall_s": round(wall, 2),
            }
        )
        print(
            f"{seed:>4} {sim['conversations_per_segment']:>13,} {cal['readouts']:>9,} {cal['ece']:>7.4f} "
            f"{cal['accuracy']:>8.3f} {cal['confidence']:>10.3f} {wall:>7.1f}"
        )
    print("ECE by user turn (first seed): " + ", ".join(f"{t['turn']}: {t['ece']:.3f}" for t in runs[0]["by_turn"][:8]))
    worst = max(r["ece"] for r in runs)
    checks = [check_line(f"ECE <= {ECE_BAR} on every seed", worst <= ECE_BAR, f"worst {worst:.4f}")]
    write_json(
        args.json,
        {
            "checkpoint": str(
                args.checkpoint.relative_to(ROOT) if args.checkpoint.is_relative_to(ROOT) else args.checkpoint
            ),
            "bins": 15,
            "runs": runs,
            "checks": checks,
        },
    )


if __name__ == "__main__":
    main()
