"""What adaptation can win: every reference policy against every segment.

For each segment (training and held-out) and each named reference policy it plays N dialogues on
the vectorised simulator and reports success rate, mean return with a 95% interval and mean turns.
It then searches the whole hand-written family (``simulators.policies.rule_family``) for the best
single policy on the power/core/casual mix, and checks the two bars of the simulators issue:

- on every training segment, that segment's own policy has the best mean return of the named ones;
- on the mix, the rule oracle's mean return is at least 15% above the best single policy's.

Usage: python bench/adaptation_gap.py [--quick] [--json PATH] [--domain NAME] [-n N]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from common import check_line, parser, write_json

from dialogue.domain import load_domain
from dialogue.tracker import ObservationLayout
from simulators.policies import make_policy, rule_family
from simulators.profiles import HELD_OUT_SEGMENTS, TRAINING_SEGMENTS
from simulators.rollout import run_dialogues

NAMED = ("power", "core", "casual", "compromise", "oracle")
GAP_BAR = 0.15


def main() -> None:
    p = parser("adaptation_gap", __doc__.splitlines()[0])
    p.add_argument("--domain", default="restaurant", help="domain to simulate (default: restaurant)")
    p.add_argument("-n", "--dialogues", type=int, default=2000, help="dialogues per cell (default: 2000)")
    p.add_argument("--markdown", type=Path, default=None, help="also write the table as markdown here")
    args = p.parse_args()
    n = 300 if args.quick else args.dialogues
    layout = ObservationLayout(load_domain(args.domain).n_slots)
    segments = [*TRAINING_SEGMENTS, *HELD_OUT_SEGMENTS]

    cells: dict[str, dict[str, dict[str, float]]] = {}
    for seg in segments:
        cells[seg] = {}
        for name in NAMED:
            cells[seg][name] = run_dialogues(make_policy(name, layout), n, domain=args.domain, segments=seg).summary()

    family: dict[str, list[float]] = {}
    for pol in rule_family(layout):
        family[pol.name] = [
            run_dialogues(pol, n, domain=args.domain, segments=seg, seed=1).summary()["mean_return"]
            for seg in TRAINING_SEGMENTS
        ]
    family_mix = {k: float(np.mean(v)) for k, v in family.items()}
    best_single = max(family_mix, key=lambda k: family_mix[k])

    def mix(policy: str) -> float:
        return float(np.mean([cells[s][policy]["mean_return"] for s in TRAINING_SEGMENTS]))

    named_mix = {name: mix(name) for name in NAMED}
    best_named_single = max((k for k in NAMED if k != "oracle"), key=lambda k: named_mix[k])
    best_single_return = max(family_mix[best_single], named_mix[best_named_single])
    oracle_mix = named_mix["oracle"]
    gap = oracle_mix / best_single_return - 1.0

    md = _markdown(cells, segments, named_mix, n, args.domain)
    print(md)
    print(f"best single policy of the family on the mix: {best_single} ({family_mix[best_single]:.2f})")
    checks = []
    for seg in TRAINING_SEGMENTS:
        others = {k: cells[seg][k]["mean_return"] for k in NAMED if k not in ("oracle", seg)}
        own = cells[seg][seg]["mean_return"]
        best_other = max(others, key=lambda k: others[k])
        checks.append(
            check_line(
                f"own policy best on {seg}",
                own > others[best_other],
                f"{seg} policy {own:.2f} vs best other ({best_other}) {others[best_other]:.2f}",
            )
        )
    checks.append(
        check_line(
            "oracle >= 15% above best single policy on the mix",
            gap >= GAP_BAR,
            f"oracle {oracle_mix:.2f} vs best single {best_single_return:.2f}: +{100 * gap:.1f}%",
        )
    )
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(md + "\n")
    figures: dict[str, Any] = {
        "domain": args.domain,
        "dialogues_per_cell": n,
        "cells": cells,
        "mix_mean_return": named_mix,
        "family_mix_mean_return": family_mix,
        "best_single_family": best_single,
        "best_single_return": best_single_return,
        "oracle_mix_return": oracle_mix,
        "gap": gap,
        "checks": checks,
        "markdown": md,
    }
    write_json(args.json, figures)


def _markdown(cells: dict, segments: list[str], named_mix: dict[str, float], n: int, domain: str) -> str:
    head = "| segment | " + " | ".join(NAMED) + " |"
    lines = [
        f"Mean return ± 95% CI / success rate / mean turns, {n} dialogues a cell, domain {domain}.",
        "",
        head,
        "|" + "---|" * (len(NAMED) + 1),
    ]
    for seg in segments:
        best = max((k for k in NAMED if k != "oracle"), key=lambda k: cells[seg][k]["mean_return"])
        row = []
        for k in NAMED:
            c = cells[seg][k]
            text = f"{c['mean_return']:.2f} ± {c['return_ci95']:.2f} / {c['success_rate']:.2f} / {c['mean_turns']:.1f}"
            row.append(f"**{text}**" if k == best else text)
        label = f"{seg} (held out)" if seg in HELD_OUT_SEGMENTS else seg
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    lines.append("| mix (power/core/casual) | " + " | ".join(f"{named_mix[k]:.2f}" for k in NAMED) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
