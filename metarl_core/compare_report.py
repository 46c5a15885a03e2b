"""The method comparison's outputs: README tables (markdown), PNG plots and the JSON summary.

``metarl_core.compare`` runs the jobs and summarises them; this module only presents a summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from metarl_core.compare import METHODS, OTHER_FRACTIONS, CompareConfig, write_json


def _pm(s: dict[str, float], digits: int = 2) -> str:
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def _steps(s: dict[str, Any]) -> str:
    if not s.get("reached"):
        return f"not reached (0/{s['of']})"
    text = f"{s['mean'] / 1000:,.0f}k ± {s['std'] / 1000:,.0f}k"
    return text if s["reached"] == s["of"] else f"{text} ({s['reached']}/{s['of']} seeds)"


def _seconds(s: dict[str, Any] | None) -> str:
    if s is None:  # a summary written before the figure existed
        return "-"
    if not s.get("reached"):
        return "not reached"
    text = f"{s['mean']:,.0f} s ± {s['std']:,.0f} s"
    return text if s["reached"] == s["of"] else f"{text} ({s['reached']}/{s['of']} seeds)"


def markdown(summary: dict[str, Any]) -> str:
    """The README tables: within one conversation, few-shot, sample efficiency and wall time."""
    cfg = summary["config"]
    methods, refs = summary["methods"], summary["references"]
    held_out = cfg["held_out"]
    tasks = list(next(iter(methods.values()))["within"])
    n_seeds = len(cfg["seeds"])
    lines = [
        f"Within one conversation (a new user, no prior data): mean return ± std over {n_seeds} seeds / "
        f"success rate; {cfg['eval_episodes']:,} conversations per segment and seed.",
        "",
        "| method | " + " | ".join(f"{t} (held out)" if t in held_out else t for t in tasks) + " | mix (held-in) |",
        "|---" * (len(tasks) + 2) + "|",
    ]
    for m in methods.values():
        cells = [f"{_pm(m['within'][t]['mean_return'])} / {m['within'][t]['success_rate']['mean']:.2f}" for t in tasks]
        lines.append(f"| {m['label']} | " + " | ".join(cells) + f" | {_pm(m['mix_return'])} |")
    for name, r in refs.items():
        cells = [f"{r['within'][t]['mean_return']:.2f} / {r['within'][t]['success_rate']:.2f}" for t in tasks]
        lines.append(f"| hand-written: {name} | " + " | ".join(cells) + f" | {r['mix_return']:.2f} |")
    ids = {name: m for name, m in methods.items() if any("id_accuracy" in m["within"][t] for t in tasks)}
    if ids:
        lines += ["", "Segment identification accuracy (prototype read-out) after 1 / 2 / 3 / 5 user turns:", ""]
        lines += ["| method | " + " | ".join(t for t in tasks if t not in held_out) + " |"]
        lines += ["|---" * (1 + len([t for t in tasks if t not in held_out])) + "|"]
        for m in ids.values():
            cells = []
            for t in tasks:
                if t in held_out:
                    continue
                acc = m["within"][t].get("id_accuracy", [])
                cells.append(" / ".join(f"{acc[k]:.2f}" for k in (0, 1, 2, 4) if k < len(acc)) or "-")
            lines.append(f"| {m['label']} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "The read-outs compare the posterior mean (contextual methods) or the GRU state (RL^2) with "
            "per-segment prototypes; the other methods have no state to read.",
        ]
    ks = list(next(iter(methods.values()))["fewshot"].get(held_out[0], {})) if held_out else []
    same = "the same user" if cfg.get("returning_user_kwarg") else "that segment (each its own user)"
    run = CompareConfig.from_dict(cfg)  # each method's training config, as the run built it
    users = {name: run.train_config(name, run.seeds[0]).conversations_per_user for name in methods}
    for task in held_out:
        lines += [
            "",
            f"Few-shot on **{task}** (held out): return of a new conversation after K earlier conversations of "
            f"{same}, mean ± std over seeds ({cfg['fewshot_episodes']:,} new conversations per K and seed):",
            "",
            "| method | how it uses the K conversations | " + " | ".join(f"K = {k}" for k in ks) + " |",
            "|---|---" + "|---" * len(ks) + "|",
        ]
        for name, m in methods.items():
            how = {
                "context": "state carried"
                + (f" (trained carried over {users[name]} per user)" if users[name] > 1 else ""),
                "gradient": "inner loop" if name == "fomaml" else "fine-tuned (PG steps)",
                "none": "not used",
            }[METHODS[name].fewshot]
            lines.append(f"| {m['label']} | {how} | " + " | ".join(_pm(m["fewshot"][task][k]) for k in ks) + " |")
        for name, r in refs.items():
            lines.append(
                f"| hand-written: {name} | not used | "
                + " | ".join(f"{r['within'][task]['mean_return']:.2f}" for _ in ks)
                + " |"
            )
    lines += [
        "",
        f"Sample efficiency: environment steps to reach {100 * cfg['efficiency_fraction']:.0f}% of the oracle's mix "
        f"return ({summary['oracle_mix_return']:.2f} -> level {summary['efficiency_level']:.2f}), mean ± std over "
        f"seeds; budget {cfg['budget_steps']:,} steps per method and seed; wall time per run on this machine, "
        "the periodic evaluations included (to the level: the training seconds at which the curve reaches it)"
        + (
            f" ({summary['jobs_span_s'] / 60:.1f} min for all runs, {cfg['jobs']} at a time)."
            if "jobs_span_s" in summary
            else "."
        ),
        "",
        "| method | steps to the level | "
        + " | ".join(f"to {100 * f:.0f}%" for f in OTHER_FRACTIONS)
        + " | final mix return | training wall time to the level | training wall time | evaluation wall time |",
        "|---" * (6 + len(OTHER_FRACTIONS)) + "|",
    ]
    for m in methods.values():
        reach = m["steps_to_level"]
        text = _steps(reach["eval/mean_return"])
        if "eval/adapted_return" in reach:
            text += f"; after its inner loop: {_steps(reach['eval/adapted_return'])}"
        others = " | ".join(_steps(m["steps_to_fraction"][str(f)]) for f in OTHER_FRACTIONS)
        lines.append(
            f"| {m['label']} | {text} | {others} | {_pm(m['mix_return'])} | {_seconds(m.get('wall_to_level'))} "
            f"| {m['train_wall_s']['mean'] / 60:.1f} min | {m['eval_wall_s']['mean']:.0f} s |"
        )
    if summary["checks"]:
        lines += [""] + [f"- [{'PASS' if c['pass'] else 'FAIL'}] {c['name']}: {c['detail']}" for c in summary["checks"]]
    return "\n".join(lines) + "\n"


def plot_efficiency(summary: dict[str, Any], path: str | Path) -> Path:
    """Return against environment steps for every method (mean and min-max over seeds, at the
    evaluation steps), with the level and where each method reaches it (x): the first quarter of
    the budget on a linear axis, where the methods differ, and the whole budget on a log axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = summary["config"]["budget_steps"]
    level = summary["efficiency_level"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    for i, m in enumerate(summary["methods"].values()):
        for key, style, suffix in (("eval/mean_return", "-", ""), ("eval/adapted_return", "--", " after inner loop")):
            curves = [[p for p in c if key in p] for c in m["curves"]]
            if not all(curves):
                continue
            steps = np.array([p["step"] for p in curves[0]], dtype=np.float64)
            ys = np.stack([np.interp(steps, [p["step"] for p in c], [p[key] for p in c]) for c in curves])
            reach = m["steps_to_level"].get(key, {})
            for ax, shown in zip(axes, (steps >= 0, steps > 0), strict=True):  # no step 0 on the log axis
                x, y = steps[shown], ys[:, shown]
                ax.plot(x, y.mean(0), style, color=f"C{i}", lw=1.3, label=m["label"] + suffix)
                ax.fill_between(x, y.min(0), y.max(0), color=f"C{i}", alpha=0.12)
                if reach.get("reached") == reach.get("of"):
                    ax.plot([reach["mean"]], [level], "x", color=f"C{i}", ms=9, mew=2)
    for ax in axes:
        ax.axhline(level, color="black", ls=":", lw=1)
        ax.grid(alpha=0.3)
        ax.set_xlabel("environment steps (dialogue turns)")
    fraction = summary["config"]["efficiency_fraction"]
    axes[0].text(budget / 4, level, f"{100 * fraction:.0f}% of the oracle's return ", va="top", ha="right", fontsize=8)
    axes[0].set_xlim(0, budget / 4)
    axes[0].set_ylim(max(axes[0].get_ylim()[0], -5), None)
    axes[0].set_ylabel("greedy mean return on the training mix")
    axes[0].set_title("first quarter of the budget (x: mean steps to the level)")
    axes[1].set_xscale("log")
    axes[1].set_xlim(
        min(p["step"] for m in summary["methods"].values() for c in m["curves"] for p in c if p["step"]), budget
    )
    axes[1].set_title("the whole budget (log axis)")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Meta-training sample efficiency: {len(summary['config']['seeds'])} seeds, mean and min-max band")
    return _save(fig, path)


def plot_fewshot(summary: dict[str, Any], path: str | Path) -> Path:
    """Return of a new conversation against K earlier ones, one panel per held-out task set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = summary["config"]["held_out"]
    same = "the same user" if summary["config"].get("returning_user_kwarg") else "the segment"
    fig, axes = plt.subplots(1, max(len(tasks), 1), figsize=(6 * max(len(tasks), 1), 4.5), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=False):
        for i, m in enumerate(summary["methods"].values()):
            ks = sorted(m["fewshot"][task], key=int)
            x = np.arange(len(ks))
            mean = [m["fewshot"][task][k]["mean"] for k in ks]
            std = [m["fewshot"][task][k]["std"] for k in ks]
            ax.errorbar(x + 0.04 * (i - 2), mean, yerr=std, marker="o", capsize=3, color=f"C{i}", label=m["label"])
        for j, (name, r) in enumerate(summary["references"].items()):
            ax.axhline(
                r["within"][task]["mean_return"],
                color="grey",
                ls=["--", ":", "-."][j % 3],
                lw=1,
                label=f"hand-written: {name}",
            )
        ax.set_xticks(x)
        ax.set_xticklabels([f"K={k}" for k in ks])
        ax.set_xlabel(f"earlier conversations of {same}")
        ax.set_ylabel("mean return of a new conversation")
        ax.set_title(f"few-shot: {task} (held out)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower left")
    return _save(fig, path)


def _save(fig: Any, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_outputs(summary: dict[str, Any], json_path: str | Path) -> dict[str, Path]:
    """``NAME.json``, ``NAME.md``, ``NAME_efficiency.png`` and ``NAME_fewshot.png`` side by side."""
    path = Path(json_path)
    write_json(path, summary)
    md = path.with_suffix(".md")
    md.write_text(markdown(summary))
    return {
        "json": path,
        "markdown": md,
        "efficiency": plot_efficiency(summary, path.with_name(path.stem + "_efficiency.png")),
        "fewshot": plot_fewshot(summary, path.with_name(path.stem + "_fewshot.png")),
    }
