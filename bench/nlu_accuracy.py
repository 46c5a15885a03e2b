"""NLU accuracy on the hand-written evaluation set (bench/data/nlu_eval_*.jsonl), dev and held-out test.

Per split: act accuracy (the set of act types read equals the labelled set), slot-value F1 over
(act, slot, value) triples by type (informable, don't-care, booking, requestable), exact-turn
accuracy (every triple right), and "not understood" precision/recall (labelled acts []). Days resolve
against Friday 4 December 2026, as the labels do. Bars on test: slot F1 >= 0.90, act accuracy >= 0.90,
booking F1 >= 0.85.

Usage: python bench/nlu_accuracy.py [--quick] [--json PATH] [--model models/nlu]
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import check_line, parser, write_json

from dialogue.domain import available_domains, load_domain
from dialogue.nlu import NLU, context_of

DATA = Path(__file__).resolve().parent / "data"
NOW = datetime(2026, 12, 4, 15)


def context(after: str) -> str:
    act, _, rest = after.partition(":")
    slot, _, value = rest.partition("=")
    return context_of(act, slot or None, value or None)


def triples(acts: list[dict]) -> set[tuple[str, str, str]]:
    out = set()
    for a in acts:
        act, slot, value = a["act"], a.get("slot") or "", a.get("value") or ""
        if act in ("negate", "relax") and slot:
            act = "inform"
        if slot or act != "book":
            out.add((act, slot, value if act != "request" else ""))
    return out


def kind(t: tuple[str, str, str]) -> str:
    act, _, value = t
    if act == "book":
        return "booking"
    if act == "request":
        return "requestable"
    return "dontcare" if value == "dontcare" else "informable"


def main() -> None:
    p = parser("nlu_accuracy", __doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=Path(__file__).resolve().parents[1] / "models" / "nlu")
    args = p.parse_args()
    nlu = NLU.load(args.model, {d: load_domain(d) for d in available_domains()})
    rows = [
        json.loads(line)
        for f in sorted(DATA.glob("nlu_eval_*.jsonl"))
        for line in f.read_text().splitlines()
        if line.strip()
    ]
    if args.quick:
        rows = rows[::5]
    c: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    started = time.perf_counter()
    for r in rows:
        got = nlu.read(r["text"], r["domain"], context(r["after"]), NOW)
        s = c[r["split"]]
        want_t, got_t = triples(r["acts"]), triples(got.acts)
        s["turns"] += 1
        s["act_right"] += {a["act"] for a in r["acts"]} == {a["act"] for a in got.acts}
        s["exact"] += want_t == got_t
        for k in ("informable", "dontcare", "booking", "requestable"):
            w = {t for t in want_t if kind(t) == k and t[1]}
            g = {t for t in got_t if kind(t) == k and t[1]}
            s[f"{k}_tp"] += len(w & g)
            s[f"{k}_fp"] += len(g - w)
            s[f"{k}_fn"] += len(w - g)
        ood, flagged = not r["acts"], not got.understood
        s["nu_tp"] += ood and flagged
        s["nu_fp"] += flagged and not ood
        s["nu_fn"] += ood and not flagged
    elapsed = time.perf_counter() - started
    out: dict[str, dict[str, float]] = {}
    for split, s in sorted(c.items()):
        f = {}
        for k in ("informable", "dontcare", "booking", "requestable", "all"):
            keys = ("informable", "dontcare", "booking", "requestable") if k == "all" else (k,)
            tp, fp, fn = (sum(s[f"{x}_{m}"] for x in keys) for m in ("tp", "fp", "fn"))
            f[f"{k}_f1"] = 2 * tp / max(2 * tp + fp + fn, 1)
        f["slot_f1"] = f.pop("all_f1")
        out[split] = {
            "utterances": int(s["turns"]),
            "act_accuracy": s["act_right"] / s["turns"],
            "exact_turn_accuracy": s["exact"] / s["turns"],
            **f,
            "not_understood_precision": s["nu_tp"] / max(s["nu_tp"] + s["nu_fp"], 1),
            "not_understood_recall": s["nu_tp"] / max(s["nu_tp"] + s["nu_fn"], 1),
        }
    names = list(next(iter(out.values())))
    print(f"{'figure':<28}" + "".join(f"{k:>10}" for k in out))
    for n in names:
        print(f"{n:<28}" + "".join(f"{out[k][n]:>10.3f}" for k in out))
    t = out.get("test", {})
    checks = [
        check_line("test slot F1 >= 0.90", t.get("slot_f1", 0) >= 0.90, f"{t.get('slot_f1', 0):.3f}"),
        check_line("test act accuracy >= 0.90", t.get("act_accuracy", 0) >= 0.90, f"{t.get('act_accuracy', 0):.3f}"),
        check_line("test booking F1 >= 0.85", t.get("booking_f1", 0) >= 0.85, f"{t.get('booking_f1', 0):.3f}"),
    ]
    write_json(args.json, {"by_split": out, "seconds": elapsed, "checks": checks, "quick": args.quick})


if __name__ == "__main__":
    main()
