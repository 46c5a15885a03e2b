"""The ``segdial`` command: one entry point for simulating, training, evaluating and serving.

This module is the composition root: it wires the packages together and is the only place that
turns a bad argument into a one-line message (``error: ...`` on stderr, exit code 2).
"""

from __future__ import annotations

import sys
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dialogue.domain import DomainError, available_domains, load_domain
from dialogue.tracker import ObservationLayout
from simulators.policies import PolicyError, make_policy, reference_policy_names
from simulators.profiles import PROFILES, TRAINING_SEGMENTS, ProfileError
from simulators.rollout import run_dialogues, run_transcripts

app = typer.Typer(
    help="segdial: a segment-adaptive dialogue policy and the simulated users it learns from.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


@app.callback()
def _root() -> None:
    """segdial: a segment-adaptive dialogue policy and the simulated users it learns from."""


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit with status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(2)


def _segments(spec: str) -> list[str]:
    if spec == "mix":
        return list(TRAINING_SEGMENTS)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [s for s in names if s not in PROFILES]
    if unknown or not names:
        fail(f"unknown segment {', '.join(unknown) or spec!r}; use mix or one of: {', '.join(PROFILES)}")
    return names


@app.command()
def simulate(
    policy: Annotated[str, typer.Option(help=f"Reference policy: {', '.join(reference_policy_names())}.")] = "oracle",
    segment: Annotated[
        str, typer.Option(help="Segment name, a comma-separated list, or 'mix' (power, core, casual).")
    ] = "mix",
    n: Annotated[int, typer.Option("-n", "--dialogues", help="Number of dialogues to simulate.")] = 1000,
    show: Annotated[int, typer.Option(help="Also print this many transcripts with both sides' text.")] = 0,
    domain: Annotated[str, typer.Option(help=f"Domain: {', '.join(available_domains())}.")] = "restaurant",
    max_turns: Annotated[int, typer.Option(help="Turn limit of a dialogue.")] = 20,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Run a policy against simulated users and print success, return, turns and hang-ups."""
    if n < 1:
        fail(f"-n must be a positive number of dialogues, got {n}")
    if show < 0:
        fail(f"--show must be zero or more, got {show}")
    if max_turns < 2:
        fail(f"--max-turns must be at least 2, got {max_turns}")
    segments = _segments(segment)
    try:
        layout = ObservationLayout(load_domain(domain).n_slots)
        pol = make_policy(policy, layout, seed=seed)
    except (DomainError, PolicyError, ProfileError) as e:
        fail(str(e))
    with Progress(
        TextColumn("simulating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("dialogues", total=n)
        stats = run_dialogues(
            pol,
            n,
            domain=domain,
            segments=segments,
            max_turns=max_turns,
            seed=seed,
            progress=lambda k: bar.advance(task, k),
        )
    table = Table(title=f"policy {policy} on {segment} users ({domain}, {stats.n} dialogues)")
    for col in ("segment", "dialogues", "success rate", "mean return (95% CI)", "mean turns", "hang-up rate"):
        table.add_column(col, justify="right" if col != "segment" else "left")
    for name in [*segments, "all"] if len(segments) > 1 else segments:
        rows = stats if name == "all" else stats.where(stats.segments == name)
        s = rows.summary()
        table.add_row(
            name,
            str(s["dialogues"]),
            f"{s['success_rate']:.3f}",
            f"{s['mean_return']:.2f} ± {s['return_ci95']:.2f}",
            f"{s['mean_turns']:.2f}",
            f"{s['hangup_rate']:.3f}",
        )
    console.print(table)
    if show:
        for text in run_transcripts(pol, show, domain=domain, segments=segments, max_turns=max_turns, seed=seed):
            console.print(text, markup=False, highlight=False)
            console.print()


def main() -> None:
    """Entry point of the ``segdial`` console script: usage errors become one line on stderr."""
    try:
        code = app(standalone_mode=False)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:
        message = getattr(e, "format_message", None)
        if not callable(message):  # not a usage error: a real bug, keep its traceback
            raise
        if message():  # a bare `segdial` has printed its help already
            print(f"error: {message()}", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
