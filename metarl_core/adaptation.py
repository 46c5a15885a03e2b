"""Evaluation of adaptation: a trained policy against its comparators, task set by task set.

For every task set (a named set of environment keyword arguments, e.g. one user segment) it
plays the same number of episodes with the policy and with each comparator (for example the
trained oracle and the segment-agnostic policy), and reports per task set: success rate, mean
return with a 95% interval, mean turns, the return as a percentage of the oracle's, and the
identification accuracy of the prototype read-out after 1..K turns (for task sets the policy has
prototypes for). ``plot_adaptation`` draws the identification curves and the returns.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from metarl_core.evaluation import EpisodeRecord, play
from metarl_core.inference import Agent


def evaluate_adaptation(
    agent: Agent,
    comparators: dict[str, Agent],
    env_id: str,
    env_kwargs: dict[str, Any],
    task_sets: dict[str, dict[str, Any]],
    *,
    held_out: set[str] | frozenset[str] = frozenset(),
    episodes: int = 2000,
    seed: int = 0,
    max_turns_id: int = 8,
    label_key: str = "segment_index",
    task_key: str = "user_params",
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Figures per task set and over the held-in mix (equal weights); see the module docstring."""

    def run(who: Agent, kwargs: dict[str, Any], label_map: np.ndarray | None) -> EpisodeRecord:
        return play(
            who,
            env_id,
            kwargs,
            episodes,
            seed=seed,
            label_key=label_key,
            task_key=task_key,
            label_map=label_map,
            max_turns_id=max_turns_id,
            progress=progress,
        )

    rows: dict[str, Any] = {}
    for name, overrides in task_sets.items():
        kwargs = {**env_kwargs, **overrides}
        label_map = None
        if name in agent.segments:
            label_map = np.array([agent.segments.index(name)])
        row: dict[str, Any] = {"held_out": name in held_out}
        rec = run(agent, kwargs, label_map)
        summary = rec.summary()
        if label_map is None:
            summary.pop("id_accuracy", None)
            if rec.confidence.any():
                # Which known segment a held-out user is taken for, after the last read-out.
                counts = np.bincount(rec.predicted[:, -1], minlength=len(agent.segments))
                summary["read_as"] = {
                    s: float(c / len(rec.predicted)) for s, c in zip(agent.segments, counts, strict=True)
                }
        row["policy"] = summary
        for cname, cagent in comparators.items():
            crec = run(cagent, kwargs, None)
            row[cname] = crec.summary()
        if "oracle" in row and row["oracle"]["mean_return"] > 0:
            row["policy"]["pct_of_oracle"] = 100.0 * row["policy"]["mean_return"] / row["oracle"]["mean_return"]
        rows[name] = row
    held_in = [n for n in task_sets if n not in held_out]
    mix: dict[str, float] = {}
    for who in ["policy", *comparators]:
        mix[who] = float(np.mean([rows[n][who]["mean_return"] for n in held_in])) if held_in else float("nan")
    return {"episodes_per_set": episodes, "task_sets": rows, "mix_mean_return": mix, "held_in": held_in}


def plot_adaptation(results: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """A PNG with two panels: identification accuracy against turns seen, and mean returns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["task_sets"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, row in rows.items():
        acc = row["policy"].get("id_accuracy")
        if acc:
            ax1.plot(range(1, len(acc) + 1), acc, marker="o", label=name)
    ax1.axhline(0.8, color="grey", ls=":", lw=1)
    ax1.axhline(0.9, color="grey", ls="--", lw=1)
    ax1.set_xlabel("user turns seen")
    ax1.set_ylabel("segment identification accuracy")
    ax1.set_ylim(0, 1.02)
    ax1.set_title("identifying the user (prototype read-out)")
    ax1.legend(loc="lower right")
    names = list(rows)
    who = ["policy", *[k for k in rows[names[0]] if k not in ("policy", "held_out")]]
    width = 0.8 / len(who)
    x = np.arange(len(names))
    for i, w in enumerate(who):
        vals = [rows[n][w]["mean_return"] for n in names]
        errs = [rows[n][w]["return_ci95"] for n in names]
        ax2.bar(x + i * width, vals, width, yerr=errs, label="contextual" if w == "policy" else w)
    ax2.set_xticks(x + width * (len(who) - 1) / 2)
    ax2.set_xticklabels([f"{n}\n(held out)" if rows[n]["held_out"] else n for n in names], fontsize=8)
    ax2.set_ylabel("mean return")
    ax2.set_title("return per segment")
    ax2.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
