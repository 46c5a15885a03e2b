"""The method comparison: every method on the same users, with one budget and the same seeds.

Methods (``METHODS``): ``contextual`` (belief encoder), ``agnostic`` (no latent) and ``oracle``
(true user parameters) with the core's PPO trainer, ``rl2`` (``metarl_core.rl2``), ``fomaml``
(``metarl_core.maml``), and ``contextual_sac`` and ``agnostic_sac``: the contextual and the
segment-agnostic policies with the off-policy learner (``metarl_core.sac``, PEARL's setting), so
that what the belief buys and what the learner buys can be told apart. Hand-written policies come
in as ``references``: callables the composition root builds, since ``metarl_core`` knows no simulator.

One job is one method and one seed: train for ``budget_steps`` environment steps (resumable),
export the checkpoint, then measure it the same way as every other job:

- within one conversation (a new user, no prior data): return, success and, where the policy has a
  read-out, identification accuracy, per task set (held-in and held-out segments);
- few-shot on each held-out task set: the return of a new conversation after K earlier ones
  (``metarl_core.fewshot``; how each method uses them is ``METHODS[m].fewshot``), of the same
  user where the environment has returning users (``returning_user_kwarg``);
- sample efficiency: the greedy return on the training mix against environment steps (the
  trainer's periodic evaluation, plus one before training).

Every finished job is written to ``OUT/jobs/METHOD-seedS.json``; running the comparison again
skips those and resumes unfinished training from its saved state. Jobs run in ``jobs`` spawned
worker processes with one torch thread each. ``summarise`` then gives mean +- std over seeds,
the steps each method needs to reach ``efficiency_fraction`` (90%) of the oracle's return, the
ratios against each contextual method (bars: FO-MAML >= 5x, RL^2 >= 2x its steps), and wall times.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import queue
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Self, cast, get_args

import numpy as np
import torch
from pydantic import Field, model_validator

from metarl_core.adaptation import evaluate_adaptation
from metarl_core.config import (
    CONFIGS,
    ConfigError,
    ConfigModel,
    LearnerConfig,
    LearnerName,
    MAMLConfig,
    PPOConfig,
    PPOUpdateConfig,
)
from metarl_core.fewshot import How, fewshot_returns
from metarl_core.inference import Agent
from metarl_core.learners import TRAINERS


class Method(NamedTuple):
    """How a method is trained (its learner, ``metarl_core.learners``) and how it uses K earlier conversations."""

    learner: LearnerName
    variant: str
    fewshot: How
    label: str

    @property
    def config(self) -> type[LearnerConfig]:
        return CONFIGS[self.learner]


METHODS: dict[str, Method] = {
    "contextual": Method("ppo", "contextual", "context", "contextual (belief, PPO)"),
    "agnostic": Method("ppo", "agnostic", "gradient", "segment-agnostic (PPO)"),
    "oracle": Method("ppo", "oracle", "none", "oracle (true user parameters)"),
    "rl2": Method("rl2", "rl2", "context", "RL^2 (GRU, PPO)"),
    "fomaml": Method("fomaml", "agnostic", "gradient", "FO-MAML"),
    "contextual_sac": Method("sac", "contextual", "context", "contextual (belief, SAC: PEARL)"),
    "agnostic_sac": Method("sac", "agnostic", "gradient", "segment-agnostic (SAC)"),
}
MethodName = Literal["contextual", "agnostic", "oracle", "rl2", "fomaml", "contextual_sac", "agnostic_sac"]
"""The names of ``METHODS``, in its order (for config validation)."""
CONTEXTUAL = ("contextual", "contextual_sac")
"""The contextual methods, each held to the sample-efficiency bars."""
EVAL_SEED = 777  # the same users for every method and seed
OTHER_FRACTIONS = (0.8, 0.95)  # further levels reported next to ``efficiency_fraction`` (no bar)


class CompareConfig(ConfigModel):
    """The comparison (a TOML file: these keys at the top, ``[train]``, ``[method.NAME]`` and a
    ``[quick]`` table that ``--quick`` lays over the rest)."""

    budget_steps: int = Field(2_000_000, gt=0)
    """Environment steps every method trains for."""
    seeds: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    methods: list[MethodName] = Field(default_factory=lambda: list(get_args(MethodName)))
    jobs: int = Field(2, gt=0)
    """Worker processes (one job = one method and one seed)."""
    held_out: list[str] = Field(default_factory=list)
    """Task sets never trained on (evaluated within one conversation and few-shot)."""
    eval_episodes: int = Field(2000, gt=0)
    """Conversations per task set, within one conversation."""
    fewshot_k: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [0, 1, 5, 20])
    fewshot_episodes: int = Field(1000, gt=0)
    fewshot_trials: int = Field(20, gt=0)
    """Independent sets of K conversations for gradient adaptation."""
    finetune_lr: float = Field(0.1, gt=0)
    """Step size of fine-tuning the agnostic policy on K conversations (FO-MAML uses its own)."""
    finetune_steps: int = Field(1, gt=0)
    efficiency_fraction: float = Field(0.9, gt=0, le=1)
    task_kwarg: str = "segments"
    """Environment keyword that restricts it to one task set: ``{task_kwarg: [name]}``."""
    returning_user_kwarg: str = "conversations_per_user"
    """Environment keyword that makes a user return for that many conversations (few-shot's K
    earlier conversations are then the same user's); empty when the environment has none."""
    train: dict[str, Any] = Field(default_factory=dict)
    """Config fields shared by every method (``metarl_core.config``)."""
    method: dict[MethodName, dict[str, Any]] = Field(default_factory=dict)
    """Per method: fields of its own config (``[method.NAME]`` in TOML)."""

    @model_validator(mode="after")
    def _every_method_can_train(self) -> Self:
        if "oracle" not in self.methods:
            raise ValueError("the comparison needs the oracle (its return sets the sample-efficiency level)")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        if 0 not in self.fewshot_k:
            raise ValueError(f"fewshot_k must include 0, got {self.fewshot_k}")
        for method in self.methods:  # every method's training config is valid before anything runs
            self.train_config(method, self.seeds[0])
        return self

    @classmethod
    def from_toml(cls, raw: dict[str, Any], quick: bool = False) -> CompareConfig:
        """From a parsed TOML file; ``quick`` lays its ``[quick]`` table over the rest (a tiny run)."""
        raw = dict(raw)
        overlay = raw.pop("quick", {})
        return cls.from_dict(_merge(raw, overlay) if quick else raw)

    def train_config(self, method: str, seed: int) -> LearnerConfig:
        """The config ``method`` trains with for ``seed`` ([train] and [method.NAME] laid over each other)."""
        m = METHODS[method]
        own = cast(dict[str, dict[str, Any]], self.method).get(method, {})
        data = {**self.train, **own, "seed": seed, "total_steps": self.budget_steps}
        if "task_kwarg" in m.config.model_fields:
            data["task_kwarg"] = self.task_kwarg
        try:
            return m.config.from_dict({**data, "variant": m.variant})
        except ConfigError as e:
            raise ConfigError(f"method {method}: {e}") from None

    @property
    def env_kwargs(self) -> dict[str, Any]:
        return dict(self.train.get("env_kwargs", {}))

    @property
    def held_in(self) -> list[str]:
        return [str(t) for t in self.env_kwargs.get(self.task_kwarg, [])]


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` laid over ``base``, tables merged key by key."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@dataclass(frozen=True)
class Job:
    method: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.method}-seed{self.seed}"


Progress = Callable[[int, int, str], None]
"""``progress(steps_done, steps_planned, status)`` over all jobs' training."""
Reference = Callable[[dict[str, Any], int, int], dict[str, Any]]
"""``reference(env_kwargs, episodes, seed)`` -> summary with ``mean_return`` and ``success_rate``."""


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a temporary file, then a rename): a killed run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float) + "\n")
    tmp.replace(path)


def run_job(cfg: CompareConfig, job: Job, out: Path, report: Callable[[str, int], None] | None = None) -> dict:
    """Train, export and measure one method and seed (or load the finished result)."""
    torch.set_num_threads(1)
    tcfg = cfg.train_config(job.method, job.seed)
    result_path = out / "jobs" / f"{job.name}.json"
    settings = {"train": tcfg.model_dump(), "measure": _measure_settings(cfg)}
    if result_path.exists():
        done = json.loads(result_path.read_text())
        if done.get("settings") == settings:
            if report is not None:
                report(job.name, tcfg.total_steps)
            return dict(done)
    started = time.time()
    trainer = TRAINERS[METHODS[job.method].learner](tcfg, out / "runs" / job.name)
    start_path = out / "runs" / job.name / "start.json"  # the curve's first point: the untrained policy
    resumed = trainer.try_resume()
    if not resumed or not start_path.exists():
        write_json(start_path, {"step": 0, **trainer.evaluate()})
    start = json.loads(start_path.read_text())
    trainer.train(None if report is None else lambda step, _s: report(job.name, step))
    card = trainer.export(out / "models" / job.name)
    t0 = time.perf_counter()
    agent = Agent.load(out / "models" / job.name)
    result = {
        "method": job.method,
        "seed": job.seed,
        "settings": settings,
        "checkpoint": str(out / "models" / job.name),
        "train_wall_s": card.training["wall_time_s"],
        "curve": [start, *trainer.history],
        **measure(cfg, job.method, agent, tcfg),
    }
    result["eval_wall_s"] = round(time.perf_counter() - t0, 1)
    result["clock"] = {"started": started, "finished": time.time()}  # this invocation (not resumed parts)
    write_json(result_path, result)
    return result


def _measure_settings(cfg: CompareConfig) -> dict[str, Any]:
    keys = ("held_out", "eval_episodes", "fewshot_k", "fewshot_episodes", "fewshot_trials", "returning_user_kwarg")
    return {k: getattr(cfg, k) for k in (*keys, "finetune_lr", "finetune_steps")}


def measure(cfg: CompareConfig, method: str, agent: Agent, tcfg: LearnerConfig) -> dict[str, Any]:
    """Within one conversation per task set, and few-shot on the held-out ones."""
    base = {k: v for k, v in tcfg.env_kwargs.items() if k != cfg.task_kwarg}
    names = [*cfg.held_in, *cfg.held_out]
    within = evaluate_adaptation(
        agent,
        {},
        tcfg.env_id,
        base,
        {n: {cfg.task_kwarg: [n]} for n in names},
        held_out=set(cfg.held_out),
        episodes=cfg.eval_episodes,
        seed=EVAL_SEED,
        label_key=tcfg.label_key,
        task_key=tcfg.task_key,
    )
    lr, steps = cfg.finetune_lr, cfg.finetune_steps
    if isinstance(tcfg, MAMLConfig):
        lr, steps = tcfg.inner_lr, tcfg.inner_steps
    # Fine-tuning is a policy-gradient step with GAE advantages: the learner's lambda, or PPO's for SAC.
    gae_lambda = tcfg.gae_lambda if isinstance(tcfg, PPOUpdateConfig) else PPOConfig.model_fields["gae_lambda"].default
    fewshot = {
        n: fewshot_returns(
            agent,
            METHODS[method].fewshot,
            tcfg.env_id,
            {**base, cfg.task_kwarg: [n]},
            sorted(cfg.fewshot_k),
            episodes=cfg.fewshot_episodes,
            trials=cfg.fewshot_trials,
            seed=EVAL_SEED,
            inner_lr=lr,
            inner_steps=steps,
            gamma=tcfg.gamma,
            gae_lambda=gae_lambda,
            returning_user_kwarg=cfg.returning_user_kwarg or None,
        )
        for n in cfg.held_out
    }
    rows = within["task_sets"]
    return {
        "within": {n: rows[n]["policy"] for n in names},
        "mix_return": within["mix_mean_return"]["policy"],
        "fewshot": {n: {str(k): v for k, v in f.items()} for n, f in fewshot.items()},
    }


def _worker(cfg: CompareConfig, job: Job, out: Path, q: Any) -> dict:
    return run_job(cfg, job, out, lambda name, step: q.put((name, step)))


def run_comparison(
    cfg: CompareConfig,
    out: str | Path,
    references: dict[str, Reference] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run (or finish) every job, measure the references, and summarise (see the module docstring)."""
    out = Path(out)
    jobs = [Job(m, s) for m in cfg.methods for s in cfg.seeds]
    planned = cfg.budget_steps * len(jobs)
    steps = {j.name: 0 for j in jobs}
    load_before = os.getloadavg()[0]
    started = time.perf_counter()

    def report(name: str, step: int) -> None:
        steps[name] = min(step, cfg.budget_steps)
        if progress is not None:
            finished = sum(1 for j in jobs if steps[j.name] >= cfg.budget_steps)
            progress(sum(steps.values()), planned, f"{finished}/{len(jobs)} jobs trained")

    results: list[dict] = []
    if cfg.jobs == 1:
        results = [run_job(cfg, j, out, report) for j in jobs]
    else:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Manager() as manager, ProcessPoolExecutor(cfg.jobs, mp_context=ctx) as pool:
            q = manager.Queue()
            pending: set[Future] = {pool.submit(_worker, cfg, j, out, q) for j in jobs}
            try:
                while pending:
                    finished, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                    results.extend(f.result() for f in finished)
                    while True:
                        try:
                            report(*q.get_nowait())
                        except queue.Empty:
                            break
            except BaseException:
                for f in pending:  # finished jobs are on disk; do not start the others
                    f.cancel()
                raise
    order = {j.name: i for i, j in enumerate(jobs)}
    results.sort(key=lambda r: order[f"{r['method']}-seed{r['seed']}"])
    refs = measure_references(cfg, references or {})
    summary = summarise(cfg, results, refs)
    summary["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
    }
    summary["comparison_wall_s"] = round(time.perf_counter() - started, 1)  # this invocation
    clocks = [r["clock"] for r in results if "clock" in r]
    if clocks and len(clocks) == len(results):  # from the first job's start to the last one's end
        summary["jobs_span_s"] = round(max(c["finished"] for c in clocks) - min(c["started"] for c in clocks), 1)
    return summary


def measure_references(cfg: CompareConfig, references: dict[str, Reference]) -> dict[str, Any]:
    """Hand-written policies on every task set (they use no earlier conversations: one figure)."""
    base = {k: v for k, v in cfg.env_kwargs.items() if k != cfg.task_kwarg}
    out: dict[str, Any] = {}
    for name, ref in references.items():
        rows = {n: ref({**base, cfg.task_kwarg: [n]}, cfg.eval_episodes, EVAL_SEED) for n in cfg.held_in + cfg.held_out}
        mix = float(np.mean([rows[n]["mean_return"] for n in cfg.held_in]))
        out[name] = {"within": rows, "mix_return": mix}
    return out


def _mean_std(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "n": len(a)}


def steps_to_reach(curve: list[dict], level: float, key: str = "eval/mean_return", x: str = "step") -> float | None:
    """Environment steps (or, with ``x="wall_time"``, training seconds, 0 at the untrained start) at
    which the curve first reaches ``level`` (linear between evaluations)."""
    points = [(p.get(x, 0.0), p[key]) for p in curve if key in p]
    for i, (step, value) in enumerate(points):
        if value >= level:
            if i == 0:
                return float(step)
            s0, v0 = points[i - 1]
            return float(s0 + (level - v0) / (value - v0) * (step - s0))
    return None


def summarise(cfg: CompareConfig, results: list[dict], references: dict[str, Any]) -> dict[str, Any]:
    """Mean +- std over seeds per method, the sample-efficiency figures and the bars."""
    by_method: dict[str, list[dict]] = {}
    for r in results:
        by_method.setdefault(r["method"], []).append(r)
    oracle_return = float(np.mean([r["mix_return"] for r in by_method["oracle"]]))
    level = cfg.efficiency_fraction * oracle_return
    methods: dict[str, Any] = {}
    for name, rs in by_method.items():
        within = {}
        for task in rs[0]["within"]:
            row: dict[str, Any] = {
                k: _mean_std([r["within"][task][k] for r in rs]) for k in ("mean_return", "success_rate")
            }
            acc = [r["within"][task].get("id_accuracy") for r in rs]
            if all(a is not None for a in acc):
                row["id_accuracy"] = [float(x) for x in np.mean(np.asarray(acc), axis=0)]
            within[task] = row
        curves = [r["curve"] for r in rs]
        reach = {key: [steps_to_reach(c, level, key) for c in curves] for key in _curve_keys(curves)}
        methods[name] = {
            "label": METHODS[name].label,
            "seeds": [r["seed"] for r in rs],
            "within": within,
            "mix_return": _mean_std([r["mix_return"] for r in rs]),
            "fewshot": {
                task: {k: _mean_std([r["fewshot"][task][k]["mean_return"] for r in rs]) for k in rs[0]["fewshot"][task]}
                for task in rs[0]["fewshot"]
            },
            "curves": curves,
            "steps_to_level": {key: _reach_summary(v) for key, v in reach.items()},
            "steps_to_fraction": {
                str(f): _reach_summary([steps_to_reach(c, f * oracle_return) for c in curves]) for f in OTHER_FRACTIONS
            },
            "wall_to_level": _reach_summary([steps_to_reach(c, level, x="wall_time") for c in curves]),
            "train_wall_s": _mean_std([r["train_wall_s"] for r in rs]),
            "eval_wall_s": _mean_std([r["eval_wall_s"] for r in rs]),
        }
    summary = {
        "config": cfg.model_dump(),
        "oracle_mix_return": oracle_return,
        "efficiency_level": level,
        "methods": methods,
        "references": references,
    }
    summary["checks"] = checks(summary)
    return summary


def _curve_keys(curves: list[list[dict]]) -> list[str]:
    keys = ["eval/mean_return"]
    if all(any("eval/adapted_return" in p for p in c) for c in curves):
        keys.append("eval/adapted_return")
    return keys


def _reach_summary(values: list[float | None]) -> dict[str, Any]:
    reached = [v for v in values if v is not None]
    out: dict[str, Any] = {"per_seed": values, "reached": len(reached), "of": len(values)}
    if reached:
        out.update(_mean_std(reached))
    return out


def checks(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The bars, for each contextual method (PPO's and SAC's): it needs >= 5x fewer steps than FO-MAML
    and >= 2x fewer than RL^2 to reach the level (a method that never reaches it counts as needing
    more than the budget)."""
    methods = summary["methods"]
    budget = summary["config"]["budget_steps"]
    out: list[dict[str, Any]] = []
    for mine in (m for m in CONTEXTUAL if m in methods):
        ctx = methods[mine]["steps_to_level"]["eval/mean_return"]
        for other, bar in (("fomaml", 5.0), ("rl2", 2.0)):
            if other not in methods:
                continue
            oth = methods[other]["steps_to_level"]["eval/mean_return"]
            name = f"{mine} needs >= {bar:.0f}x fewer steps than {other} to reach the level"
            if ctx["reached"] < ctx["of"]:
                detail = f"{mine} reached it in {ctx['reached']}/{ctx['of']} seeds"
                out.append({"name": name, "pass": False, "detail": detail})
                continue
            other_steps = oth["mean"] if oth["reached"] == oth["of"] else float(budget)
            ratio = other_steps / max(ctx["mean"], 1.0)
            more = (
                ""
                if oth["reached"] == oth["of"]
                else f" ({other} reached it in {oth['reached']}/{oth['of']} seeds; budget used)"
            )
            out.append(
                {
                    "name": name,
                    "pass": bool(ratio >= bar),
                    "detail": f"{other} {other_steps:,.0f} / {mine} {ctx['mean']:,.0f} steps = {ratio:.2f}x{more}",
                    "ratio": ratio,
                }
            )
    return out
