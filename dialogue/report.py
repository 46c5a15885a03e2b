"""The segment-adaptation report: one self-contained HTML page and the same figures as JSON.

``write_report(figures, out_dir)`` takes what ``dialogue.analytics.all_figures`` computed and
writes ``report.html`` (plots drawn with matplotlib and embedded as base64 PNG data URIs, no
script, no external file: it opens from disk without a server) and ``figures.json``. Every plot
is an ``<img class="plot" data-plot=NAME>``; a section without data says so in words instead.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from dialogue.analytics import ECE_BAR

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#7f7f7f"]
CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 0.8em 0; } td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img.plot { max-width: 100%; display: block; margin: 0.6em 0; }
.note { color: #555; font-size: 0.92em; } .empty { background: #fff8e1; padding: 1em; border-radius: 6px; }
.pass { color: #1b5e20; font-weight: bold; } .fail { color: #b71c1c; font-weight: bold; }
"""


def write_report(figures: dict[str, Any], out_dir: str | Path, title: str = "Segment adaptation") -> tuple[Path, Path]:
    """Write ``report.html`` and ``figures.json`` into ``out_dir``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page, data = out / "report.html", out / "figures.json"
    page.write_text(render_html(figures, title))
    data.write_text(json.dumps(figures, indent=1) + "\n")
    return page, data


def render_html(figures: dict[str, Any], title: str = "Segment adaptation") -> str:
    """The page as a string (see the module docstring)."""
    ov = figures["overview"]
    source = figures.get("source", {})
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>",
        f"<style>{CSS}</style></head><body><h1>{_e(title)}</h1>",
        f"<p class='note'>{_e(_describe_source(source, figures['window']))}</p>",
    ]
    if not ov["conversations"]:
        parts.append(
            "<div class='empty' id='no-data'><strong>No data yet.</strong> There are no conversations in this "
            "window, so there is nothing to plot. Once the service has logged conversations (or with "
            "<code>segdial report --simulate CHECKPOINT</code>), this page shows the segment mix, how fast users "
            "are identified and how each segment's conversations end.</div>"
        )
    else:
        parts += [
            _overview(ov),
            _mix_section(figures["segment_mix"]),
            _identification_section(figures["turns_to_identification"]),
            _outcomes_section(figures["outcomes"]),
            _simulated_section(figures["confusion"], figures["calibration"]),
            _trajectory_section(figures["trajectories"]),
        ]
    parts.append(_methods_section(figures.get("methods")))
    parts.append(_definitions(figures))
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


# -- helpers ------------------------------------------------------------------------------------
def _e(text: Any) -> str:
    return html.escape(str(text))


def _fmt(x: Any, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def _plot(name: str, alt: str, draw: Callable[[Figure], None], size: tuple[float, float] = (10, 4)) -> str:
    fig = plt.figure(figsize=size)
    try:
        draw(fig)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
    finally:
        plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return f"<img class='plot' data-plot='{name}' alt='{_e(alt)}' src='data:image/png;base64,{data}'>"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td class='num'>{_e(c)}</td>" if i else f"<td>{_e(c)}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _describe_source(source: dict[str, Any], window: dict[str, Any]) -> str:
    what = source.get("description", "")
    since, until = window.get("since"), window.get("until")
    span = f"conversations created from {since or 'the beginning'} until {until or 'now'}"
    return f"{what} — {span}." if what else f"{span[0].upper()}{span[1:]}."


def _overview(ov: dict[str, Any]) -> str:
    sim = f", {ov['simulated']:,} of them simulated users" if ov["simulated"] else ""
    return (
        f"<p><strong>{ov['conversations']:,}</strong> conversations with {ov['user_turns']:,} user turns{sim}, "
        f"from {_e(_minute(ov['first']))} to {_e(_minute(ov['last']))} UTC.</p>"
    )


def _minute(iso: str) -> str:
    """``2025-01-31T12:34:56.789+00:00`` -> ``2025-01-31 12:34``."""
    return iso[:16].replace("T", " ")


def _mix_section(mix: dict[str, Any]) -> str:
    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        x = np.arange(len(mix["buckets"]))
        bottom = np.zeros(len(x))
        for i, seg in enumerate(mix["segments"]):
            vals = np.array(mix["counts"][seg])
            ax.bar(x, vals, bottom=bottom, color=COLORS[i % len(COLORS)], label=seg, width=0.85)
            bottom += vals
        step = max(1, len(x) // 12)
        ax.set_xticks(x[::step])
        ax.set_xticklabels([_minute(b)[5:] for b in mix["buckets"][::step]], rotation=30, fontsize=8)
        ax.set_ylabel(f"conversations per {mix['bucket']}")
        ax.set_title("segment mix over time (inferred segment of each conversation)")
        ax.legend()

    total = sum(mix["totals"].values())
    rows = [[s, f"{n:,}", f"{n / total:.1%}"] for s, n in mix["totals"].items()]
    return (
        "<h2>Which segments arrive</h2>"
        + _plot("segment_mix", "segment mix over time", draw)
        + _table(["inferred segment", "conversations", "share"], rows)
    )


def _identification_section(tti: dict[str, Any]) -> str:
    segs = tti["segments"]
    if not segs:
        return "<h2>How fast users are identified</h2><p class='empty'>No user turns yet.</p>"
    labels = [str(k) for k in range(1, tti["max_turn"] + 1)] + ["never"]

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        width = 0.8 / len(segs)
        x = np.arange(len(labels))
        for i, (seg, row) in enumerate(segs.items()):
            share = np.array([*row["histogram"], row["never"]]) / row["conversations"]
            ax.bar(x + i * width, share, width, color=COLORS[i % len(COLORS)], label=seg)
        ax.set_xticks(x + width * (len(segs) - 1) / 2)
        ax.set_xticklabels(labels)
        ax.set_xlabel("user turns to identification")
        ax.set_ylabel("share of conversations")
        ax.set_title(f"turns to identification ({tti['reference']}, p >= {tti['threshold']:.2f})")
        ax.legend()

    rows = [
        [
            seg,
            f"{r['conversations']:,}",
            f"{r['identified_share']:.1%}",
            _fmt(r["mean"], ".2f"),
            _fmt(r["median"], ".1f"),
        ]
        for seg, r in segs.items()
    ]
    return (
        "<h2>How fast users are identified</h2>"
        + _plot("turns_to_identification", "turns to identification", draw)
        + _table([tti["reference"], "conversations", "identified", "mean turns", "median turns"], rows)
    )


def _outcomes_section(outcomes: dict[str, Any]) -> str:
    segs = outcomes["segments"]
    panels = [
        ("success_rate", "success rate"),
        ("mean_return", "mean return"),
        ("mean_turns", "mean user turns"),
        ("hangup_rate", "hang-up rate"),
    ]

    def draw(fig: Figure) -> None:
        names = list(segs)
        for j, (key, label) in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), j + 1)
            vals = [segs[s][key] for s in names]
            ax.bar(
                range(len(names)), [v if v is not None else 0 for v in vals], color=COLORS[: len(names)] or COLORS[0]
            )
            for i, v in enumerate(vals):
                ax.text(i, v or 0, "n/a" if v is None else f"{v:.2f}", ha="center", va="bottom", fontsize=8)
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, rotation=20, fontsize=8)
            ax.set_title(label)

    rows = [
        [
            s,
            f"{r['conversations']:,}",
            f"{_fmt(r['success_rate'])} ({r['with_outcome']:,} with an outcome)",
            f"{_fmt(r['mean_return'], '.2f')}" + (f" ({r['with_return']:,})" if r["with_return"] else ""),
            _fmt(r["mean_turns"], ".2f"),
            _fmt(r["hangup_rate"]),
        ]
        for s, r in segs.items()
    ]
    return (
        "<h2>How each segment's conversations end</h2>"
        + _plot("outcomes", "outcomes per inferred segment", draw, (12, 3.6))
        + _table(["inferred segment", "conversations", "success", "mean return", "user turns", "hang-ups"], rows)
        + "<p class='note'>Success counts conversations whose outcome was recorded (simulated users always; the "
        "service's clients through <code>POST /v1/conversations/{id}/end</code>). The return is known for simulated "
        "users only.</p>"
    )


def _simulated_section(conf: dict[str, Any], cal: dict[str, Any]) -> str:
    head = "<h2>Inferred against true segment, and calibration (simulated users)</h2>"
    if not conf["conversations"]:
        return (
            head
            + "<p class='empty'>No simulated conversations in this window: "
            + "the true segment of real users is unknown.</p>"
        )

    def draw_confusion(fig: Figure) -> None:
        ax = fig.add_subplot()
        counts = np.array(conf["counts"], dtype=float)
        share = counts / counts.sum(1, keepdims=True).clip(min=1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (i, j), n in np.ndenumerate(counts):
            ax.text(
                j,
                i,
                f"{int(n)}\n{share[i, j]:.0%}",
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.6 else "black",
            )
        ax.set_xticks(range(len(conf["inferred"])), conf["inferred"])
        ax.set_yticks(range(len(conf["true"])), conf["true"])
        ax.set_xlabel("inferred segment (last read-out)")
        ax.set_ylabel("true segment")
        ax.set_title(f"confusion matrix (accuracy {conf['accuracy']:.3f})")

    def draw_reliability(fig: Figure) -> None:
        ax = fig.add_subplot(1, 2, 1)
        bins = [b for b in cal["reliability"] if b["readouts"]]
        mids = [(b["low"] + b["high"]) / 2 for b in cal["reliability"]]
        width = 1 / cal["bins"]
        acc = [b["accuracy"] or 0 for b in cal["reliability"]]
        ax.bar(mids, acc, width * 0.95, color=COLORS[0], label="accuracy")
        ax.plot([0, 1], [0, 1], color="grey", ls="--", label="perfect calibration")
        ax.plot(
            [b["confidence"] for b in bins],
            [b["accuracy"] for b in bins],
            "o",
            color=COLORS[1],
            ms=4,
            label="mean confidence",
        )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (top segment probability)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"reliability diagram, ECE {cal['ece']:.4f}")
        ax.legend(loc="upper left", fontsize=8)
        ax2 = fig.add_subplot(1, 2, 2)
        ax2.bar(mids, [b["readouts"] for b in cal["reliability"]], width * 0.95, color=COLORS[2])
        ax2.set_yscale("log")
        ax2.set_xlim(0, 1)
        ax2.set_xlabel("confidence")
        ax2.set_ylabel("read-outs in the bin")
        ax2.set_title("where the read-outs are")

    ok = cal["ece"] is not None and cal["ece"] <= cal["bar"]
    verdict = f"{'meets' if ok else 'does not meet'} the bar ECE <= {cal['bar']}"
    verdict = f"<span class='{'pass' if ok else 'fail'}'>{verdict}</span>"
    turns = _table(
        ["user turn", "read-outs", "ECE", "accuracy", "mean confidence"],
        [
            [str(r["turn"]), f"{r['readouts']:,}", _fmt(r["ece"], ".4f"), _fmt(r["accuracy"]), _fmt(r["confidence"])]
            for r in cal["by_turn"]
        ],
    )
    return (
        head
        + _plot("confusion", "confusion matrix", draw_confusion, (6, 4.6))
        + f"<p id='ece'><strong>Expected calibration error: {_fmt(cal['ece'], '.4f')}</strong> over "
        f"{cal['readouts']:,} read-outs of {cal['conversations']:,} simulated conversations (top-label, "
        f"{cal['bins']} equal-width bins; accuracy {_fmt(cal['accuracy'])}, mean confidence {_fmt(cal['confidence'])}) "
        f"— {verdict}.</p>"
        + _plot("reliability", "reliability diagram", draw_reliability, (11, 4))
        + "<details><summary>ECE by user turn</summary>"
        + turns
        + "</details>"
    )


def _trajectory_section(traj: dict[str, Any]) -> str:
    head = "<h2>Belief trajectories</h2>"
    if not traj["conversations"]:
        return head + "<p class='empty'>No conversation has two read-outs yet.</p>"
    segs = list(dict.fromkeys([*traj["prototypes"], *(c["segment"] for c in traj["conversations"])]))
    color = {s: COLORS[i % len(COLORS)] for i, s in enumerate(segs)}

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        for seg, path in traj["prototypes"].items():
            p = np.array(path)
            ax.plot(p[:, 0], p[:, 1], color=color[seg], lw=3, alpha=0.35)
            ax.scatter(
                p[:, 0],
                p[:, 1],
                marker="*",
                s=160,
                color=color[seg],
                edgecolor="black",
                zorder=3,
                label=f"{seg} prototype",
            )
        for conv in traj["conversations"]:
            p = np.array(conv["points"])
            ax.plot(p[:, 0], p[:, 1], "-o", color=color[conv["segment"]], ms=3, lw=1)
            ax.annotate("start", p[0], fontsize=7, color=color[conv["segment"]])
        ax.set_xlabel("axis 1")
        ax.set_ylabel("axis 2")
        ax.set_title(f"posterior mean after each user turn ({traj['axes']})")
        ax.legend(fontsize=8)

    share = sum(traj.get("explained_variance") or [])
    return (
        head
        + _plot("trajectories", "belief trajectories", draw, (8, 6))
        + f"<p class='note'>{len(traj['conversations'])} sample conversations (the earliest with two or more read-outs "
        f"per segment), coloured by their {'true' if traj['prototypes'] else 'reference'} segment; stars are the "
        f"prototypes after 1, 2, ... turns. The two axes hold {share:.0%} of the prototypes' variance.</p>"
    )


def _methods_section(methods: dict[str, Any] | None) -> str:
    if not methods:
        return ""
    who = list(dict.fromkeys(w for row in methods["task_sets"].values() for w in row if w != "held_out"))
    rows = []
    for name, row in methods["task_sets"].items():
        cells = [f"{name} (held out)" if row["held_out"] else name]
        for w in who:
            r = row.get(w)
            cells.append(f"{r['mean_return']:.2f} / {r['success_rate']:.3f}" if r else "-")
        rows.append(cells)
    mix = methods.get("mix_mean_return", {})
    rows.append(["mix (held-in)", *[_fmt(mix.get(w), ".2f") for w in who]])
    names = {"policy": "contextual (this policy)"}
    return (
        "<h2>Method comparison</h2>"
        + _table(["segment", *[names.get(w, w) for w in who]], rows)
        + f"<p class='note'>Mean return / success rate, {methods['episodes_per_set']} simulated dialogues per segment "
        f"and policy, from <code>{_e(methods['source'])}</code> (<code>segdial evaluate</code>).</p>"
    )


def _definitions(figures: dict[str, Any]) -> str:
    tti = figures["turns_to_identification"]
    return f"""<h2>Definitions</h2><ul class='note'>
<li><b>Read-out</b>: the segment probabilities after a user turn that updated the belief (a closing bye or
hang-up turn repeats the last read-out and is not counted again).</li>
<li><b>Inferred segment</b>: the most probable segment of a conversation's last read-out.</li>
<li><b>Turns to identification</b>: the first user turn k such that every read-out from turn k to the end of the
conversation names the {_e(tti["reference"])} with probability &ge; {tti["threshold"]:.2f}; "never" when the last
read-out does not.</li>
<li><b>Hang-up</b>: the user's last act is a hang-up, or the recorded outcome is <i>abandoned</i>.</li>
<li><b>Expected calibration error</b> (simulated users, whose true segment is known): top-label, over every
read-out; confidence = the largest probability, correct = that segment is the true one; read-outs are put in
{figures["calibration"]["bins"]} equal-width confidence bins and ECE = &sum; (share of read-outs in the bin) &times;
|accuracy &minus; mean confidence|. The bar is ECE &le; {ECE_BAR}.</li>
</ul>"""
