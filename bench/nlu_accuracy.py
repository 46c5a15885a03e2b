"""NLU accuracy on held-out simulated utterances: act type accuracy and slot-value F1, by segment.

The utterances come from simulated dialogues with a seed the NLU was not trained on, in both
domains. Act-type and register (terse/plain/chatty) accuracy are over all user turns; slot-value F1
over the (slot, value) pairs of inform and negate turns (a pair counts when both slot and value are
right). Bars: act type
accuracy >= 95%, slot F1 >= 90%.

Usage: python bench/nlu_accuracy.py [--quick] [--json PATH] [--model models/nlu]
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import check_line, parser, write_json

from dialogue.domain import available_domains, load_domain
from dialogue.nlu import NLU
from simulators.corpus import collect_utterances

ACT_BAR, F1_BAR = 0.95, 0.90
TEST_SEED = 12345


def main() -> None:
    p = parser("nlu_accuracy", __doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=Path(__file__).resolve().parents[1] / "models" / "nlu")
    args = p.parse_args()
    dialogues = 100 if args.quick else 600
    nlu = NLU.load(args.model, {d: load_domain(d) for d in available_domains()})
    rows: dict[str, dict[str, float]] = {}
    counts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    started = time.perf_counter()
    n_utt = 0
    for domain in available_domains():
        corpus = collect_utterances(dialogues, domain=domain, seed=TEST_SEED)
        n_utt += len(corpus)
        acts, _ = nlu.act_types([u.text for u in corpus])
        for u, predicted in zip(corpus, acts, strict=True):
            c = counts[u.segment]
            c["turns"] += 1
            c["act_right"] += predicted == u.act
            c["register_right"] += nlu.register(u.text) == u.register
            if u.act in ("inform", "negate"):
                got = {(slot, value) for slot, value, _ in nlu.matchers[domain].informs(u.text)}
                want = set(u.informs)
                c["tp"] += len(got & want)
                c["fp"] += len(got - want)
                c["fn"] += len(want - got)
    elapsed = time.perf_counter() - started
    for seg, c in sorted(counts.items()):
        precision = c["tp"] / max(c["tp"] + c["fp"], 1)
        recall = c["tp"] / max(c["tp"] + c["fn"], 1)
        rows[seg] = {
            "utterances": int(c["turns"]),
            "act_accuracy": c["act_right"] / c["turns"],
            "register_accuracy": c["register_right"] / c["turns"],
            "slot_precision": precision,
            "slot_recall": recall,
            "slot_f1": 2 * precision * recall / max(precision + recall, 1e-9),
        }
    header = f"{'segment':<10} {'utterances':>10} {'act acc':>8} {'register':>8}"
    print(f"{header} {'slot P':>7} {'slot R':>7} {'slot F1':>8}")
    for seg, r in rows.items():
        print(
            f"{seg:<10} {r['utterances']:>10} {r['act_accuracy']:>8.4f} {r['register_accuracy']:>8.4f} "
            f"{r['slot_precision']:>7.4f} {r['slot_recall']:>7.4f} {r['slot_f1']:>8.4f}"
        )
    checks = []
    for seg, r in rows.items():
        checks.append(
            check_line(
                f"act accuracy >= {ACT_BAR:.0%} ({seg})", r["act_accuracy"] >= ACT_BAR, f"{r['act_accuracy']:.4f}"
            )
        )
        checks.append(check_line(f"slot F1 >= {F1_BAR:.0%} ({seg})", r["slot_f1"] >= F1_BAR, f"{r['slot_f1']:.4f}"))
    write_json(
        args.json,
        {
            "by_segment": rows,
            "utterances": n_utt,
            "seconds": elapsed,
            "checks": checks,
            "test_seed": TEST_SEED,
            "quick": args.quick,
        },
    )


if __name__ == "__main__":
    main()
