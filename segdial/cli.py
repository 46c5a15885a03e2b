"""The ``segdial`` command: one entry point for simulating, training, evaluating and serving.

This module is the composition root: it wires the packages together and turns what goes wrong
into one line (``segdial.flags.fail``: ``error: ...`` on stderr, exit code 2 for bad input and 1
for a failure outside); the flags of the service's settings are ``segdial.flags``'s. It is over
450 lines because the NLU training procedure and the evaluation bars still live here (issue 18
moves them to the packages that own them).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import numpy as np
import pydantic
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dialogue.domain import DomainError, available_domains, load_domain
from dialogue.service.settings import Settings
from dialogue.tracker import ObservationLayout
from metarl_core.checkpoint import CheckpointError
from segdial.flags import (
    DatabaseOption,
    LogLevelOption,
    ModelOption,
    NluOption,
    bad_settings,
    fail,
    setting_option,
    settings_from,
)
from simulators.policies import Policy, PolicyError, make_policy, reference_policy_names
from simulators.profiles import HELD_OUT_SEGMENTS, PROFILES, TRAINING_SEGMENTS, ProfileError
from simulators.rollout import run_dialogues, run_transcripts

app = typer.Typer(
    help="segdial: a segment-adaptive dialogue policy and the simulated users it learns from.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Wide enough for the evaluation table when the output is not a terminal (logs, CI).
console = Console(width=None if sys.stdout.isatty() else 150)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"segdial {version('segdial')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """segdial: a segment-adaptive dialogue policy and the simulated users it learns from."""


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
    policy: Annotated[
        str, typer.Option(help=f"A checkpoint folder, or a reference policy: {', '.join(reference_policy_names())}.")
    ] = "oracle",
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
        pol = _policy(policy, layout, seed)
    except (DomainError, PolicyError, ProfileError, CheckpointError, ValueError) as e:
        fail(str(e))
    with _progress("simulating", transient=True) as bar:
        task = bar.add_task("dialogues", total=n, status="")
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


def _policy(name: str, layout: ObservationLayout, seed: int) -> Policy:
    """A reference policy by name, or a trained checkpoint by path."""
    if name in reference_policy_names():
        return make_policy(name, layout, seed=seed)
    if Path(name).exists() or "/" in name:
        from segdial.agents import CheckpointPolicy

        return CheckpointPolicy(name, layout)
    return make_policy(name, layout, seed=seed)  # raises the error listing the names


def _progress(label: str, transient: bool = False) -> Progress:
    """A progress bar with a status text field (the same look for every long command)."""
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=transient,
    )


def _check_environment(config: Path, key: str, env_id: str, env_kwargs: dict[str, Any]) -> None:
    """Fail in one line when a config's environment cannot be made (an unknown segment or domain, a bad keyword)."""
    import gymnasium

    from metarl_core.evaluation import make_vec

    try:
        make_vec(env_id, 1, **env_kwargs).close()
    except (gymnasium.error.Error, ImportError, TypeError, ValueError) as e:
        fail(f"{config}: {key} = {json.dumps(env_kwargs)}: {str(e).strip().splitlines()[0]}")


@app.command()
def train(
    config: Annotated[
        Path,
        typer.Option(
            help="TOML config (see configs/): \\[train] holds the learner's config fields "
            "(metarl_core.config), comparators lists the variants trained beside it, learner is ppo (default) or sac."
        ),
    ] = Path("configs/default.toml"),
    out: Annotated[
        Path | None, typer.Option(help="Checkpoint folder to write (default: models/<config name>).")
    ] = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="Logs and resumable state (default: runs/<config name>).")
    ] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Override total_steps of every policy trained.")] = None,
) -> None:
    """Train the policy of a config (and its comparators, same learner and budget).

    The learner is PPO (metarl_core.ppo) unless the config says learner = "sac" (discrete soft
    actor-critic with replay, metarl_core.sac). A killed run continues where it stopped when the
    same command is run again.
    """
    from metarl_core.config import ConfigError, TrainFile
    from metarl_core.learners import trainer_for

    if not config.is_file():
        fail(f"no config file at {config}")
    try:
        cfg, *comparator_configs = TrainFile.read(config).configs(total_steps=steps)
    except ConfigError as e:
        fail(f"{config}: {e}")
    _check_environment(config, "[train] env_kwargs", cfg.env_id, cfg.env_kwargs)
    out = out or Path("models") / config.stem
    run_dir = run_dir or Path("runs") / config.stem
    jobs = [(cfg, out, run_dir / cfg.variant)]
    for ccfg in comparator_configs:
        jobs.append((ccfg, out / "comparators" / ccfg.variant, run_dir / ccfg.variant))
    summary = []
    for jcfg, jout, jrun in jobs:
        trainer = trainer_for(jcfg)(jcfg, jrun)
        try:
            resumed = trainer.try_resume()
        except ValueError as e:  # the run folder holds another configuration's run
            fail(str(e))
        if resumed:
            console.print(f"resuming {jcfg.variant} from {jrun} at step {trainer.global_step:,}")
        total = trainer.n_updates * trainer.batch_steps
        with _progress(f"training {jcfg.variant}") as bar:
            task = bar.add_task("train", total=total, completed=trainer.global_step, status="")

            def report(step: int, scalars: dict[str, float], bar: Progress = bar, task: Any = task) -> None:
                status = f"return {scalars.get('charts/episode_return', float('nan')):.2f}"
                if "eval/mean_return" in scalars:
                    status += f" | eval {scalars['eval/mean_return']:.2f}, success {scalars['eval/success_rate']:.2f}"
                bar.update(task, completed=step, status=status)

            trainer.train(report)
        card = trainer.export(jout)
        # The exported weights' evaluation: the best one with keep_best, else the last.
        last = card.training.get("selected") or (card.training["history"][-1] if card.training["history"] else {})
        summary.append((jcfg.variant, jout, card.training["wall_time_s"], last.get("eval/mean_return", float("nan"))))
    table = Table(title=f"trained from {config}")
    for col in ("policy", "checkpoint", "wall time", "exported weights' eval return"):
        table.add_column(col)
    for variant, path, wall, ret in summary:
        table.add_row(variant, str(path), f"{wall / 60:.1f} min", f"{ret:.2f}")
    console.print(table)


@app.command()
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint folder of a contextual policy.")],
    n: Annotated[int, typer.Option("-n", "--dialogues", help="Dialogues per segment and policy.")] = 2000,
    out: Annotated[Path | None, typer.Option(help="Folder for evaluation.json and adaptation.png.")] = None,
    oracle: Annotated[
        Path | None, typer.Option(help="Trained oracle (default: CHECKPOINT/comparators/oracle).")
    ] = None,
    agnostic: Annotated[
        Path | None, typer.Option(help="Segment-agnostic policy (default: CHECKPOINT/comparators/agnostic).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    text: Annotated[
        bool,
        typer.Option(
            "--text",
            help="Through words: the simulated users speak, the service's NLU reads and the served turn logic "
            "answers (guard, handover, no-match alternatives); beside the same users at the act level. "
            "Writes text_evaluation.json and text.png.",
        ),
    ] = False,
    nlu: Annotated[Path | None, typer.Option(help="NLU artifact for --text (default: the shipped models/nlu).")] = None,
    beyond: Annotated[
        bool,
        typer.Option(
            help="Also users beyond the segments (the widened parameter box and mixtures of two segments, "
            "n/5 users of 10 dialogues each, fresh seeds): no-harm share and worst decile against the agnostic policy."
        ),
    ] = True,
) -> None:
    """Evaluate adaptation: per segment (held-in and held-out) against the oracle and the agnostic policy."""
    from metarl_core.adaptation import evaluate_adaptation, plot_adaptation
    from metarl_core.inference import Agent

    if n < 1:
        fail(f"-n must be positive, got {n}")
    if text:
        _evaluate_text(checkpoint, n, out, agnostic, seed, nlu)
        return
    try:
        agent = Agent.load(checkpoint)
        comparators = {}
        for name, path in (("oracle", oracle), ("agnostic", agnostic)):
            path = path or checkpoint / "comparators" / name
            if path.exists():
                comparators[name] = Agent.load(path, obs_dim=agent.spec.obs_dim)
    except CheckpointError as e:
        fail(str(e))
    if agent.card is None or not agent.contextual:
        fail(f"{checkpoint} is not a contextual policy; evaluate needs one with segment prototypes")
    card = agent.card
    base_kwargs = {k: v for k, v in card.env_kwargs.items() if k != "segments"}
    segments = [*TRAINING_SEGMENTS, *HELD_OUT_SEGMENTS]
    task_sets = {s: {"segments": [s]} for s in segments}
    users = max(20, n // 5)
    gating = beyond and "agnostic" in comparators
    total = n * len(task_sets) * (1 + len(comparators))
    if beyond:
        total += 2 * users * 10 * (1 + len(comparators) + gating) + gating * n * len(TRAINING_SEGMENTS)
    with _progress("evaluating") as bar:
        task = bar.add_task("eval", total=total, status="")
        results = evaluate_adaptation(
            agent,
            comparators,
            card.env_id,
            base_kwargs,
            task_sets,
            held_out=set(HELD_OUT_SEGMENTS),
            episodes=n,
            seed=seed,
            progress=lambda k: bar.advance(task, k),
        )
        if beyond:
            from segdial.beyond import evaluate_beyond

            policies = {"contextual": agent, **comparators}
            if "agnostic" in comparators:
                policies["gated"] = gated = _gated_policy(agent, comparators["agnostic"], card.env_id, base_kwargs)
                results["gated"] = _evaluate_gated(gated, card.env_id, base_kwargs, results, n, seed)
                bar.advance(task, n * len(TRAINING_SEGMENTS))
            results["beyond"] = evaluate_beyond(
                policies,
                card.env_id,
                base_kwargs,
                users=users,
                dialogues_per_user=10,
                progress=lambda k: bar.advance(task, k),
            )
    layout = ObservationLayout(load_domain(str(base_kwargs.get("domain", "restaurant"))).n_slots)
    hand = {}
    for name in ("power", "core", "casual", "compromise"):
        stats = run_dialogues(
            make_policy(name, layout),
            n * 3,
            domain=str(base_kwargs.get("domain", "restaurant")),
            segments=list(TRAINING_SEGMENTS),
            seed=seed,
        )
        hand[name] = float(np.mean([stats.where(stats.segments == s).returns.mean() for s in TRAINING_SEGMENTS]))
    results["hand_written_mix_mean_return"] = hand
    results["checks"] = _adaptation_checks(results)
    if "beyond" in results:
        from segdial.beyond import beyond_checks

        results["checks"] += beyond_checks(results["beyond"])
    for segment, row in results.get("gated", {}).items():
        if segment == "thresholds":
            continue
        pct, unknown = row.get("pct_of_oracle", float("nan")), row["unknown_turn_share"]
        results["checks"].append(
            {"name": f"gated on {segment}: return >= 95% of the oracle", "pass": pct >= 95.0, "detail": f"{pct:.1f}%"}
        )
        results["checks"].append(
            {"name": f"gated on {segment}: turns taken as no segment < 5%", "pass": unknown < 0.05,
             "detail": f"{unknown:.1%}"}
        )  # fmt: skip
    out = out or checkpoint / "eval"
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(results, indent=2) + "\n")
    png = plot_adaptation(results, out / "adaptation.png", title=f"{checkpoint} ({n} dialogues per segment)")
    _print_adaptation(results)
    console.print(f"figures written to {out / 'evaluation.json'} and {png}")


def _gated_policy(agent: Any, agnostic: Any, env_id: str, env_kwargs: dict[str, Any]) -> Any:
    """The contextual policy gated to the agnostic one where the conversation fits no segment
    (thresholds calibrated on held-in users of their own seed)."""
    from segdial.beyond import FIT_SEED, GatedAgent, calibrate_fit

    return GatedAgent(agent, agnostic, calibrate_fit(agent, env_id, env_kwargs, seed=FIT_SEED))


def _evaluate_gated(
    gated: Any, env_id: str, env_kwargs: dict[str, Any], results: dict[str, Any], n: int, seed: int
) -> dict[str, Any]:
    """The gated policy on the held-in segments (same seed as the contextual one): its return, its
    share of the oracle and how often a held-in user's turn is taken as fitting no segment."""
    from metarl_core.evaluation import play

    out: dict[str, Any] = {"thresholds": [float(t) for t in gated.thresholds]}
    for segment in TRAINING_SEGMENTS:
        gated.gated = gated.turns = 0
        row = play(gated, env_id, {**env_kwargs, "segments": [segment]}, n, seed=seed, max_turns_id=1).summary()
        row.pop("id_accuracy", None)
        oracle = results["task_sets"][segment].get("oracle", {}).get("mean_return")
        if oracle:
            row["pct_of_oracle"] = 100.0 * row["mean_return"] / oracle
        row["unknown_turn_share"] = gated.gated / max(gated.turns, 1)
        out[segment] = row
    return out


def _evaluate_text(
    checkpoint: Path, n: int, out: Path | None, agnostic: Path | None, seed: int, nlu_path: Path | None
) -> None:
    """``segdial evaluate --text``: see ``segdial.text_eval``."""
    from dialogue.nlu import NLU, NLUError
    from dialogue.service.settings import DEFAULT_NLU, Settings
    from metarl_core.inference import Agent
    from segdial.text_eval import evaluate_text, plot_text, text_checks

    try:
        policies = {"contextual": Agent.load(checkpoint)}
        path = agnostic or checkpoint / "comparators" / "agnostic"
        if path.exists():
            policies["agnostic"] = Agent.load(path, obs_dim=policies["contextual"].spec.obs_dim)
        reader = NLU.load(nlu_path or DEFAULT_NLU, {d: load_domain(d) for d in available_domains()})
    except (CheckpointError, NLUError) as e:
        fail(str(e))
    card = policies["contextual"].card
    kwargs = card.env_kwargs if card is not None else {}
    domain = str(kwargs.get("domain", "restaurant"))
    segments = [*TRAINING_SEGMENTS, *HELD_OUT_SEGMENTS]
    with _progress("text evaluation") as bar:
        task = bar.add_task("eval", total=n * len(segments) * 2 * len(policies), status="")
        results = evaluate_text(
            policies,
            domain,
            segments,
            n,
            reader,
            max_turns=int(kwargs.get("max_turns", 20)),
            handover_after=Settings().handover_after,
            seed=seed,
            progress=lambda k: bar.advance(task, k),
        )
    checks = text_checks(results)
    table = Table(title=f"{checkpoint} through words ({n} dialogues per segment; act level in brackets)")
    for col in ("policy", "segment", "success", "return", "turns", "not understood", "handovers", "loops"):
        table.add_column(col, justify="left" if col in ("policy", "segment") else "right")
    for name, modes in results.items():
        for seg, t in modes["text"].items():
            a = modes["act"][seg]
            table.add_row(
                name,
                seg,
                f"{100 * t['success']:.1f}% ({100 * a['success']:.1f}%)",
                f"{t['mean_return']:.2f} ({a['mean_return']:.2f})",
                f"{t['mean_turns']:.1f} ({a['mean_turns']:.1f})",
                f"{t['not_understood_per_dialogue']:.2f}",
                f"{100 * t['handovers']:.1f}%",
                f"{t['loops']} ({a['loops']})",
            )
    console.print(table)
    for c in checks:
        console.print(
            f"[{'green' if c['pass'] else 'red'}]{'PASS' if c['pass'] else 'FAIL'}[/] {c['name']}: {c['detail']}"
        )
    out = out or checkpoint / "eval"
    out.mkdir(parents=True, exist_ok=True)
    record = {"checkpoint": str(checkpoint), "domain": domain, "dialogues": n, "seed": seed, "results": results}
    (out / "text_evaluation.json").write_text(json.dumps({**record, "checks": checks}, indent=2) + "\n")
    png = plot_text(results, out / "text.png", f"{checkpoint}: success through words and at the act level")
    console.print(f"figures written to {out / 'text_evaluation.json'} and {png}")


def _adaptation_checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows, mix = results["task_sets"], results["mix_mean_return"]
    checks = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append({"name": name, "pass": bool(ok), "detail": detail})

    for seg, row in rows.items():
        pct = row["policy"].get("pct_of_oracle")
        if pct is not None:
            bar = 90.0 if row["held_out"] else 95.0
            check(f"{seg}: return >= {bar:.0f}% of the oracle", pct >= bar, f"{pct:.1f}%")
        if "agnostic" in row and not row["held_out"]:
            p, a = row["policy"]["mean_return"], row["agnostic"]["mean_return"]
            check(f"{seg}: not worse than the agnostic policy", p >= a, f"{p:.2f} vs {a:.2f}")
    if "agnostic" in mix:
        gain = mix["policy"] / mix["agnostic"] - 1
        check(
            "mix: >= 10% above the agnostic policy (retired: the trained oracle is only about 3% above it)",
            gain >= 0.10,
            f"{mix['policy']:.2f} vs {mix['agnostic']:.2f} ({100 * gain:+.1f}%)",
        )
    best_hand = max(results["hand_written_mix_mean_return"].items(), key=lambda kv: kv[1])
    gain = mix["policy"] / best_hand[1] - 1
    check(
        "mix: >= 10% above the best single hand-written policy",
        gain >= 0.10,
        f"{mix['policy']:.2f} vs {best_hand[0]} {best_hand[1]:.2f} ({100 * gain:+.1f}%)",
    )
    held_in = [r for r in rows.values() if not r["held_out"] and "id_accuracy" in r["policy"]]
    for k, bar in ((1, 0.8), (2, 0.9)):
        acc = float(np.mean([r["policy"]["id_accuracy"][k - 1] for r in held_in]))
        check(f"identification after {k} user turn(s) >= {bar:.0%}", acc >= bar, f"{acc:.3f}")
    if "core" in rows:
        s = rows["core"]["policy"]["success_rate"]
        check("core users: success >= 95% (retired: the oracle itself reaches about 94.6%)", s >= 0.95, f"{s:.3f}")
    return checks


def _print_adaptation(results: dict[str, Any]) -> None:
    rows = results["task_sets"]
    table = Table(title="adaptation (contextual policy; comparators in brackets)")
    for col in (
        "segment",
        "success",
        "mean return",
        "turns",
        "% of oracle",
        "agnostic",
        "oracle",
        "id@1",
        "id@2",
        "id@3",
        "id@5",
    ):
        table.add_column(col, justify="left" if col == "segment" else "right")
    for seg, row in rows.items():
        p = row["policy"]
        acc = p.get("id_accuracy") or []
        table.add_row(
            f"{seg} (held out)" if row["held_out"] else seg,
            f"{p['success_rate']:.3f}",
            f"{p['mean_return']:.2f} ± {p['return_ci95']:.2f}",
            f"{p['mean_turns']:.2f}",
            f"{p['pct_of_oracle']:.1f}%" if "pct_of_oracle" in p else "-",
            f"{row['agnostic']['mean_return']:.2f}" if "agnostic" in row else "-",
            f"{row['oracle']['mean_return']:.2f}" if "oracle" in row else "-",
            *[f"{acc[k - 1]:.3f}" if len(acc) >= k else "-" for k in (1, 2, 3, 5)],
        )
    mix = results["mix_mean_return"]
    table.add_row(
        "mix (held-in)",
        "",
        f"{mix['policy']:.2f}",
        "",
        "",
        f"{mix.get('agnostic', float('nan')):.2f}",
        f"{mix.get('oracle', float('nan')):.2f}",
        "",
        "",
        "",
        "",
    )
    console.print(table)
    if "beyond" in results:
        _print_beyond(results["beyond"])
    for segment, row in results.get("gated", {}).items():
        if segment != "thresholds":
            console.print(
                f"gated on {segment}: return {row['mean_return']:.2f} ({row.get('pct_of_oracle', float('nan')):.1f}% "
                f"of the oracle), success {row['success_rate']:.3f}, turns taken as no segment "
                f"{row['unknown_turn_share']:.1%}"
            )
    for c in results["checks"]:
        verdict = "PASS" if c["pass"] else "RETIRED" if "(retired" in c["name"] else "FAIL"
        console.print(f"[{verdict}] {c['name']}: {c['detail']}", markup=False)


def _print_beyond(beyond: dict[str, Any]) -> None:
    table = Table(
        title=f"beyond the segments ({beyond['users']} users x ~{beyond['dialogues_per_user']} dialogues a population)"
    )
    for col in ("users", "policy", "return", "success", "hang-ups", "turns", "worst decile", "no harm", "diff p10"):
        table.add_column(col, justify="left" if col in ("users", "policy") else "right")
    for name, rows in beyond["populations"].items():
        for who, r in rows.items():
            harm = r.get("no_harm")
            table.add_row(
                name,
                who,
                f"{r['mean_return']:.2f}",
                f"{r['success_rate']:.3f}",
                f"{r['hangup_rate']:.3f}",
                f"{r['mean_turns']:.2f}",
                f"{r['worst_decile_return']:.2f}",
                f"{harm['share_not_worse']:.1%}" if harm else "",
                f"{harm['difference_p10']:+.2f}" if harm else "",
            )
    console.print(table)


@app.command()
def compare(
    config: Annotated[Path, typer.Option(help="TOML comparison config (see configs/compare.toml).")] = Path(
        "configs/compare.toml"
    ),
    quick: Annotated[
        bool, typer.Option("--quick", help="Lay the config's \\[quick] table over it: a tiny run.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Runs, checkpoints and finished jobs (default: runs/compare[-quick]); run again to resume."),
    ] = None,
    json_path: Annotated[
        Path | None,
        typer.Option(
            "--json", help="Figures to write; NAME.md and two PNGs go next to it (default: OUT/compare.json)."
        ),
    ] = None,
    jobs: Annotated[int | None, typer.Option(min=1, help="Worker processes (default: the config's).")] = None,
) -> None:
    """Compare meta-RL methods on the same users, one budget and the same seeds.

    Contextual, RL^2, first-order MAML, segment-agnostic and oracle policies (PPO), and contextual
    and segment-agnostic policies with the off-policy SAC learner, are trained for every seed (the
    config's methods list picks them), then measured within one conversation, few-shot on held-out
    segments and for sample efficiency, next to hand-written policies. A killed run keeps its
    finished jobs and resumes.
    """
    from metarl_core.compare import CompareConfig, run_comparison
    from metarl_core.compare_report import markdown, write_outputs
    from metarl_core.config import ConfigError, read_toml

    if not config.is_file():
        fail(f"no config file at {config}")
    try:
        cfg = CompareConfig.from_toml(read_toml(config), quick=quick)
        cfg.jobs = jobs or cfg.jobs
    except ConfigError as e:
        fail(f"{config}: {e}")
    first = cfg.train_config(cfg.methods[0], cfg.seeds[0])
    _check_environment(config, "[train] env_kwargs", first.env_id, first.env_kwargs)
    unknown = [s for s in cfg.held_out if s not in PROFILES]
    if unknown:
        known = ", ".join(PROFILES)
        fail(f"{config}: held_out = {json.dumps(cfg.held_out)}: unknown segment {unknown[0]!r}; known: {known}")
    layout = ObservationLayout(load_domain(str(cfg.env_kwargs.get("domain", "restaurant"))).n_slots)
    out = out or Path("runs") / ("compare-quick" if quick else "compare")

    def reference(policy: Policy) -> Any:
        return lambda kwargs, n, seed: run_dialogues(policy, n, seed=seed, **kwargs).summary()

    references = {
        "compromise": reference(make_policy("compromise", layout)),
        "rule oracle": reference(make_policy("oracle", layout)),
    }
    with _progress("comparing") as bar:
        task = bar.add_task("compare", total=None, status="")
        summary = run_comparison(
            cfg,
            out,
            references,
            lambda done, total, status: bar.update(task, completed=done, total=total, status=status),
        )
    paths = write_outputs(summary, json_path or out / "compare.json")
    console.print(markdown(summary), markup=False, highlight=False)
    console.print(f"figures written to {', '.join(str(p) for p in paths.values())}")


@app.command()
def report(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Folder for report.html (self-contained) and figures.json.")],
    database_url: DatabaseOption = None,
    simulate: Annotated[
        Path | None,
        typer.Option(help="A checkpoint: play simulated users of its segments (true segment known) instead of logs."),
    ] = None,
    n: Annotated[int, typer.Option("-n", "--dialogues", help="With --simulate: conversations per segment.")] = 2000,
    since: Annotated[str | None, typer.Option(help="Conversations created at or after this ISO time (UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="Conversations created before this ISO time (UTC).")] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            help="Checkpoint for prototypes and method comparison (default: the simulated one, or SEGDIAL_MODEL_PATH)."
        ),
    ] = None,
    threshold: Annotated[float, typer.Option(help="Probability that counts as identifying the user.")] = 0.8,
    png: Annotated[
        Path | None, typer.Option(help="Also render the page in headless Chromium to this PNG and check every plot.")
    ] = None,
    seed: Annotated[int, typer.Option(help="With --simulate: random seed.")] = 0,
) -> None:
    """Segment-adaptation report from production logs (--db) or simulated users (--simulate CHECKPOINT)."""
    from segdial import reporting

    source = ctx.get_parameter_source("database_url")  # the flag, not SEGDIAL_DATABASE_URL, clashes with --simulate
    if source is not None and source.name == "COMMANDLINE" and simulate:
        fail("use --db (production logs) or --simulate CHECKPOINT (simulated users), not both")
    if n < 1:
        fail(f"-n must be a positive number of conversations, got {n}")
    try:
        window = reporting.parse_window(since, until)
        reporting.check_threshold(threshold)
        if simulate is not None:
            url = f"sqlite:///{(out / 'simulation.db').resolve()}"
            out.mkdir(parents=True, exist_ok=True)
            (out / "simulation.db").unlink(missing_ok=True)
            with _progress("simulating users") as bar:
                task = bar.add_task("simulate", total=None, status="")
                sim = reporting.simulate_to_database(
                    simulate,
                    url,
                    n,
                    seed=seed,
                    progress=lambda k: bar.advance(task, k),
                    total=lambda t: bar.update(task, total=t),
                )
            model = model or simulate
            what = f"{sim['conversations_per_segment']:,} simulated users per segment of {simulate} (seed {seed})"
        else:
            settings = settings_from(database_url=database_url)
            url = settings.database_url
            model = model or (settings.model_path if settings.model_path.exists() else None)
            what = "Production logs"
        result = reporting.make_report(out, url, window, model=model, description=what, threshold=threshold, png=png)
    except reporting.ReportError as e:
        fail(str(e), e.status)
    except (CheckpointError, ValueError) as e:
        fail(str(e))
    figures = result.figures
    console.print(f"{figures['overview']['conversations']:,} conversations from {what}")
    ece = figures["calibration"]["ece"]
    if ece is not None:
        verdict = "meets" if ece <= figures["calibration"]["bar"] else "does NOT meet"
        console.print(
            f"calibration: ECE {ece:.4f} over {figures['calibration']['readouts']:,} read-outs ({verdict} the bar 0.05)"
        )
    console.print(f"report written to {result.page} and {result.figures_path}")
    if result.rendered is not None:
        r = result.rendered
        console.print(f"rendered in headless Chromium to {r.screenshot}: plots {', '.join(r.plots) or 'none'}")
        if r.broken_images or r.console_errors:
            fail(f"the page did not render cleanly: broken images {r.broken_images}, console errors {r.console_errors}")


db_app = typer.Typer(help="The service's database.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys of the service.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseOption = None) -> None:
    """Bring the database to the newest schema."""
    from dialogue.service import db
    from dialogue.service.startup import database_failure

    url = settings_from(database_url=database_url).database_url
    try:
        db.upgrade(url)
    except Exception as e:  # a database that cannot be reached or used: say so in one line
        failure = database_failure(e, url)
        fail(f"could not upgrade: {failure}", failure.status)
    console.print(f"database at {db.safe_url(url)} is at revision {db.head_revision()}")


@db_app.command("current")
def db_current(database_url: DatabaseOption = None) -> None:
    """Print the schema revision of the database and whether it is the newest (exit 1 if not)."""
    from dialogue.service import db

    url = settings_from(database_url=database_url).database_url
    engine = _engine(url)
    try:
        current = db.current_revision(engine)
    except Exception as e:  # unreachable: one line, no password
        _database_failed(e, url)
    finally:
        engine.dispose()
    head = db.head_revision()
    state = "the newest" if current == head else f"behind {head}: run `segdial db upgrade`"
    print(f"{db.safe_url(url)}: revision {current or 'none (empty database)'}, {state}")
    if current != head:
        raise typer.Exit(1)


def _database_failed(error: Exception, url: str) -> NoReturn:
    from dialogue.service.startup import database_failure

    failure = database_failure(error, url)
    fail(str(failure), failure.status)


def _engine(url: str) -> Any:
    """An engine on ``url`` (not connected yet), or a one-line error for a URL that cannot be used."""
    from dialogue.service import db

    try:
        return db.make_engine(url)
    except Exception as e:  # the URL or its driver
        _database_failed(e, url)


def _keys_engine(database_url: str | None) -> Any:
    """The engine of the database at the newest schema (an empty SQLite file is migrated)."""
    from dialogue.service import db

    url = settings_from(database_url=database_url).database_url
    engine = _engine(url)
    try:
        if url.startswith("sqlite") and db.current_revision(engine) is None:
            db.upgrade(url)
        db.check_schema(engine)
    except Exception as e:  # unreachable or not migrated: one line, no password
        _database_failed(e, url)
    return engine


@keys_app.command("list")
def keys_list(database_url: DatabaseOption = None) -> None:
    """List the API keys: id, name, created, revoked (keys themselves are never stored)."""
    from dialogue.service import db

    engine = _keys_engine(database_url)
    with db.session_factory(engine)() as session:
        rows = session.query(db.ApiKey).order_by(db.ApiKey.id).all()
    table = Table(title=f"{len(rows)} API keys")
    for col in ("id", "name", "created", "revoked"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r.id), r.name, r.created_at.isoformat(timespec="seconds"), "yes" if r.revoked else "no")
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[int, typer.Argument(metavar="ID", help="The id of the key (see `segdial keys list`).")],
    database_url: DatabaseOption = None,
) -> None:
    """Revoke an API key: its next request gets 401."""
    from dialogue.service import db

    engine = _keys_engine(database_url)
    with db.session_factory(engine)() as session:
        row = session.get(db.ApiKey, key_id)
        if row is None:
            fail(f"no API key with id {key_id} (see `segdial keys list`)")
        if row.revoked:
            fail(f"API key {key_id} ({row.name}) is already revoked")
        row.revoked = True
        session.commit()
        print(f"revoked API key {key_id} ({row.name})")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="Who the key is for (a client name).")],
    database_url: DatabaseOption = None,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from dialogue.service import db
    from dialogue.service.app import create_key

    if not name.strip():
        fail("the key needs a non-empty name")
    if len(name.strip()) > 100:
        fail("the key name must be at most 100 characters")
    engine = _keys_engine(database_url)
    with db.session_factory(engine)() as session:
        key = create_key(session, name.strip())
    print(key)


nlu_app = typer.Typer(help="The text NLU of the service.", no_args_is_help=True)
app.add_typer(nlu_app, name="nlu")


@nlu_app.command("train")
def nlu_train(
    turns: Annotated[int, typer.Option(help="Labelled paraphrase-grammar turns per domain for the tagger.")] = 12000,
    dialogues: Annotated[int, typer.Option(help="Simulated dialogues per domain for the register classifier.")] = 2000,
    epochs: Annotated[int, typer.Option(help="Passes of the tagger over its turns.")] = 4,
    taggers: Annotated[int, typer.Option(help="Taggers in the ensemble (their probabilities are averaged).")] = 2,
    out: Annotated[Path, typer.Option(help="Folder for the NLU artifact.")] = Path("models/nlu"),
    seed: Annotated[int, typer.Option(help="Random seed of the grammar, the dialogues and the training.")] = 0,
) -> None:
    """Train the NLU: the act/slot tagger on the paraphrase grammar, the register classifier on simulated users."""
    import time
    from collections import Counter

    from rich.progress import Progress

    from dialogue.domain import load_domain
    from dialogue.nlu import SentenceEncoder, save_nlu
    from dialogue.nlu.labels import span_kinds
    from dialogue.nlu.train import train_register, train_tagger
    from simulators.corpus import collect_utterances
    from simulators.paraphrase import sample_turns

    if min(turns, dialogues, epochs, taggers) < 1:
        fail(
            f"--turns, --dialogues, --epochs and --taggers must be positive: {turns}, {dialogues}, {epochs}, {taggers}"
        )
    started = time.perf_counter()
    domains = [load_domain(d) for d in available_domains()]
    labelled = [t for i, d in enumerate(domains) for t in sample_turns(d, turns, seed=seed * 101 + i)]
    kinds = span_kinds(
        sorted({s for d in domains for s in d.slots}),
        sorted({s for d in domains for s in d.booking}),
        sorted({s for d in domains for s in d.requestable}),
    )
    encoder = SentenceEncoder()
    with Progress(console=console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        members, tagger_figures = train_tagger(
            labelled, kinds, encoder, epochs=epochs, seed=seed, members=taggers, progress=progress
        )
    corpus = [u for d in available_domains() for u in collect_utterances(dialogues, domain=d, seed=seed)]
    registers = Counter((u.text, u.register) for u in corpus)
    reg_texts = sorted(registers)
    reg, reg_acc = train_register(
        [t for t, _ in reg_texts],
        [r for _, r in reg_texts],
        np.array([registers[t] for t in reg_texts], dtype=np.float64),
        seed=seed,
    )
    figures = {
        "grammar_turns_per_domain": turns,
        "epochs": epochs,
        "taggers": taggers,
        **tagger_figures,
        "register_dialogues_per_domain": dialogues,
        "register_train_accuracy": reg_acc,
        "seed": seed,
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    save_nlu(out, members, kinds, reg, figures)
    console.print(
        f"tagger: tags {tagger_figures['train_tag_accuracy']:.4f}, "
        f"act types {tagger_figures['train_intent_exact']:.4f}; "
        f"register {reg_acc:.4f} (on their training data); {figures['wall_time_s']} s; written to {out}"
    )


def _service(model: Path | None, nlu: Path | None, database_url: str | None, log_level: str | None) -> dict[str, Any]:
    """The settings of the flags that ``serve`` and ``actions`` share."""
    return {"model_path": model, "nlu_path": nlu, "database_url": database_url, "log_level": log_level}


@app.command()
def serve(
    host: Annotated[str | None, setting_option("host", "Address to listen on (0.0.0.0 in a container).")] = None,
    port: Annotated[int | None, setting_option("port", "Port to listen on (0: any free port).")] = None,
    workers: Annotated[
        int | None, setting_option("workers", "Worker processes, each with its own policy and NLU, on one port.")
    ] = None,
    model: ModelOption = None,
    nlu: NluOption = None,
    database_url: DatabaseOption = None,
    log_level: LogLevelOption = None,
) -> None:
    """Run the HTTP service.

    Every flag is also its SEGDIAL_* variable (shown with it), read from the environment or a .env
    file in the working folder; the flag wins. The other settings (limits, threads, handover) are
    variables only: SEGDIAL_MAX_TURNS, SEGDIAL_MAX_ACTS, SEGDIAL_MAX_TEXT_CHARS, SEGDIAL_MAX_BODY_BYTES,
    SEGDIAL_METRICS_PUBLIC, SEGDIAL_HANDOVER_AFTER, SEGDIAL_TORCH_THREADS, SEGDIAL_WORKER_THREADS.
    """
    import uvicorn

    from dialogue.service.app import create_app
    from dialogue.service.startup import OUTSIDE, StartupError, open_runtime
    from dialogue.service.workers import serve_workers

    settings = settings_from(host=host, port=port, workers=workers, **_service(model, nlu, database_url, log_level))
    if settings.workers == 1:
        # Opened here rather than in the app's lifespan, so that a bad setting is one line, not
        # uvicorn's traceback of the failed start-up.
        try:
            runtime = open_runtime(settings)
        except StartupError as e:
            fail(f"cannot start segdial: {e}", e.status)
        app = create_app(settings, runtime=runtime)
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level)
        return
    # Several processes, each building its own app from these settings and accepting on a socket
    # of its own, so that connections spread over the workers (dialogue.service.workers).
    try:
        status = serve_workers(settings)
    except OSError as exc:
        fail(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}", OUTSIDE)
    if status:
        raise typer.Exit(status)  # a worker could not start: it said why in one line


@app.command()
def actions(
    host: Annotated[
        str | None, setting_option("actions_host", "Address to listen on (0.0.0.0 in a container).")
    ] = None,
    port: Annotated[
        int | None, setting_option("actions_port", "Port of the webhook (Rasa's endpoints.yml action_endpoint).")
    ] = None,
    domain: Annotated[
        str | None,
        setting_option("rasa_domain", f"The segdial domain of the assistant: {', '.join(available_domains())}."),
    ] = None,
    api_url: Annotated[
        str | None,
        setting_option(
            "api_url",
            "Send turns to a running `segdial serve` at this URL, with the key in SEGDIAL_API_KEY, "
            "instead of opening the policy in-process.",
            "in-process",
        ),
    ] = None,
    model: ModelOption = None,
    nlu: NluOption = None,
    database_url: DatabaseOption = None,
    log_level: LogLevelOption = None,
) -> None:
    """Run the Rasa action server: action_segdial_policy and action_segdial_end at POST /webhook.

    In-process by default (the policy, NLU and database of these settings); with --api-url
    (SEGDIAL_API_URL) and SEGDIAL_API_KEY, turns go to a running `segdial serve` instead. Every flag
    is also its SEGDIAL_* variable, read from the environment or a .env file; the flag wins. Also
    read: SEGDIAL_RASA_CLIENT, SEGDIAL_RASA_SEND_TEXT, SEGDIAL_API_TIMEOUT, SEGDIAL_WORKER_THREADS.
    """
    from dialogue.rasa.server import serve
    from dialogue.service.startup import StartupError

    flags = _service(model, nlu, database_url, log_level)
    settings = settings_from(actions_host=host, actions_port=port, rasa_domain=domain, api_url=api_url, **flags)
    try:
        serve(settings)
    except StartupError as e:
        fail(str(e), e.status)


def main() -> None:
    """Entry point of the ``segdial`` console script: usage errors become one line on stderr."""
    try:
        code = app(standalone_mode=False)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except pydantic.ValidationError as e:
        if e.title != Settings.__name__:  # not SEGDIAL_* settings read where no flag passed them: a bug
            raise
        print(f"error: {bad_settings(e)}", file=sys.stderr)
        sys.exit(2)
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
