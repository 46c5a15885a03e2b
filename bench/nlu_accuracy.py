"""NLU accuracy on the hand-written evaluation set (bench/data/nlu_eval_*.jsonl), dev and held-out
test, beside the simulated set (the simulators' own user text), and the latency of NLU.read.

Per set: act accuracy (the set of act types read equals the labelled set), slot-value F1 over
(act, slot, value) triples by type (informable, don't-care, booking, requestable), exact-turn
accuracy (every triple right), and "not understood" precision/recall (labelled acts []). Days resolve
against Friday 4 December 2026, as the labels do. The simulated set is every user turn of simulated
dialogues (``simulators.corpus``, seeds the NLU's training never used), labelled with the acts the
simulated user meant and read with the system prompt it answered. Bars: on test slot F1 >= 0.90,
act accuracy >= 0.90, booking F1 >= 0.85; no simulated figure < 0.97 (its "not understood" precision
and recall have no lines to count, since simulated users always mean something: the figure that
counts there is the share of lines understood). Latency: ``NLU.read`` alone, one
utterance a call, one thread, over every utterance of both sets (the service's text turn adds the
policy step and the database).

Usage: python bench/nlu_accuracy.py [--quick] [--json PATH] [--model models/nlu] [--dialogues N]
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import check_line, parser, write_json

from dialogue.domain import available_domains, load_domain
from dialogue.nlu import NLU, context_of
from simulators.corpus import Utterance, collect_utterances

DATA = Path(__file__).resolve().parent / "data"
NOW = datetime(2026, 12, 4, 15)
SIMULATED_SEED = 7  # the NLU's trainer draws its dialogues with seed 0
FIGURES = ("informable", "dontcare", "booking", "requestable")


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


def simulated_row(u: Utterance, domain: str) -> dict[str, Any]:
    """A simulated user turn as a line of the evaluation set (acts in its label format)."""
    act = {"relax": "inform"}.get(u.act, u.act)
    acts: list[dict[str, Any]] = (
        [{"act": act}] if act not in ("inform", "request") or not (u.informs or u.requests) else []
    )
    if act in ("inform", "negate"):
        acts += [{"act": "inform", "slot": s, "value": v} for s, v in u.informs]
    acts += [{"act": "request", "slot": r} for r in u.requests]
    acts += [{"act": "book", "slot": s, "value": v} for s, v in u.booking]
    return {"split": "simulated", "domain": domain, "after": u.after, "text": u.text, "acts": acts}


def score(rows: list[dict[str, Any]], readings: list[Any]) -> dict[str, dict[str, float]]:
    """The figures of every split."""
    c: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r, got in zip(rows, readings, strict=True):
        s = c[r["split"]]
        want_t, got_t = triples(r["acts"]), triples(got.acts)
        s["turns"] += 1
        s["act_right"] += {a["act"] for a in r["acts"]} == {a["act"] for a in got.acts}
        s["exact"] += want_t == got_t
        for k in FIGURES:
            w = {t for t in want_t if kind(t) == k and t[1]}
            g = {t for t in got_t if kind(t) == k and t[1]}
            s[f"{k}_tp"] += len(w & g)
            s[f"{k}_fp"] += len(g - w)
            s[f"{k}_fn"] += len(w - g)
        ood, flagged = not r["acts"], not got.understood
        s["nu_tp"] += ood and flagged
        s["nu_fp"] += flagged and not ood
        s["nu_fn"] += ood and not flagged
    out: dict[str, dict[str, float]] = {}
    for split, s in sorted(c.items()):
        f = {}
        for k in (*FIGURES, "all"):
            keys = FIGURES if k == "all" else (k,)
            tp, fp, fn = (sum(s[f"{x}_{m}"] for x in keys) for m in ("tp", "fp", "fn"))
            f[f"{k}_f1"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
        f["slot_f1"] = f.pop("all_f1")
        n_flagged, n_ood = s["nu_tp"] + s["nu_fp"], s["nu_tp"] + s["nu_fn"]
        out[split] = {
            "utterances": int(s["turns"]),
            "act_accuracy": s["act_right"] / s["turns"],
            "exact_turn_accuracy": s["exact"] / s["turns"],
            **f,
            # With no line meant as nothing (the simulated set) precision has nothing to count: the
            # false alarms are the "not understood" rate.
            "not_understood_precision": s["nu_tp"] / n_flagged if n_flagged and n_ood else float("nan"),
            "not_understood_recall": s["nu_tp"] / n_ood if n_ood else float("nan"),
            "not_understood_rate": n_flagged / s["turns"],
        }
    return out


def main() -> None:
    p = parser("nlu_accuracy", __doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=Path(__file__).resolve().parents[1] / "models" / "nlu")
    p.add_argument("--dialogues", type=int, default=300, help="simulated dialogues per domain")
    args = p.parse_args()
    torch.set_num_threads(1)  # the latency of one request on one core
    nlu = NLU.load(args.model, {d: load_domain(d) for d in available_domains()})
    rows = [
        json.loads(line)
        for f in sorted(DATA.glob("nlu_eval_*.jsonl"))
        for line in f.read_text().splitlines()
        if line.strip()
    ]
    dialogues = args.dialogues // 10 if args.quick else args.dialogues
    rows += [
        simulated_row(u, d)
        for d in available_domains()
        for u in collect_utterances(dialogues, domain=d, seed=SIMULATED_SEED)
    ]
    if args.quick:
        rows = rows[::5]
    nlu.read(rows[0]["text"], rows[0]["domain"], context(rows[0]["after"]), NOW)  # warm-up
    readings, seconds = [], []
    started = time.perf_counter()
    for r in rows:
        t0 = time.perf_counter()
        readings.append(nlu.read(r["text"], r["domain"], context(r["after"]), NOW))
        seconds.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    out = score(rows, readings)
    ms = np.array(seconds) * 1000
    latency = {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
               "max_ms": float(ms.max()), "reads": len(ms), "threads": 1}  # fmt: skip
    names = list(next(iter(out.values())))
    print(f"{'figure':<28}" + "".join(f"{k:>11}" for k in out))
    for n in names:
        print(f"{n:<28}" + "".join(f"{out[k][n]:>11.3f}" for k in out))
    print(f"NLU.read, one thread, {len(ms)} reads: p50 {latency['p50_ms']:.1f} ms, p99 {latency['p99_ms']:.1f} ms")
    t, sim = out.get("test", {}), out.get("simulated", {})
    counted = {n: v for n, v in sim.items() if n not in ("utterances", "not_understood_rate") and v == v}  # not NaN
    if sim:
        counted["understood_rate"] = 1.0 - sim["not_understood_rate"]  # every simulated line means something
    low = {n: v for n, v in counted.items() if v < 0.97}
    checks = [
        check_line("test slot F1 >= 0.90", t.get("slot_f1", 0) >= 0.90, f"{t.get('slot_f1', 0):.3f}"),
        check_line("test act accuracy >= 0.90", t.get("act_accuracy", 0) >= 0.90, f"{t.get('act_accuracy', 0):.3f}"),
        check_line("test booking F1 >= 0.85", t.get("booking_f1", 0) >= 0.85, f"{t.get('booking_f1', 0):.3f}"),
        check_line(
            "no simulated figure < 0.97",
            bool(sim) and not low,
            ", ".join(f"{n} {v:.3f}" for n, v in low.items()) or f"lowest {min(counted.values(), default=0):.3f}",
        ),
        check_line("NLU.read p99 <= 60 ms (one thread)", latency["p99_ms"] <= 60, f"{latency['p99_ms']:.1f} ms"),
    ]
    write_json(
        args.json,
        {"by_split": out, "latency": latency, "seconds": elapsed, "checks": checks, "quick": args.quick,
         "simulated_dialogues_per_domain": dialogues},
    )  # fmt: skip


if __name__ == "__main__":
    main()
