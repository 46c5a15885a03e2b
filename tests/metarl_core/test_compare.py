"""The method comparison (``metarl_core.compare``) and ``segdial compare``.

- A tiny comparison of every method (two seeds, one worker, in this process) trains, exports and
  measures each job, and its summary, markdown and plots hold every method, task set and K; run
  again it loads the finished jobs instead of training, and a lost job result is measured again
  from the saved run without training it again.
- With two worker processes the progress reaches the planned steps and the results are the same
  kind as in-process.
- ``steps_to_reach`` interpolates between evaluations; the bars compare steps with the contextual
  method, counting a method that never reaches the level as needing the whole budget.
- Bad comparison configs are refused with a message, and ``segdial compare`` turns them (and a
  missing file, a bad --jobs) into one-line errors.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dialogue.tracker import ObservationLayout
from metarl_core import compare as cmp
from metarl_core.compare import METHODS, CompareConfig, run_comparison, steps_to_reach
from metarl_core.compare_report import markdown, write_outputs
from metarl_core.config import SACConfig
from metarl_core.ppo import PPOTrainer
from metarl_core.trainer import Trainer
from simulators.policies import make_policy
from simulators.rollout import run_dialogues

TRAIN = {
    "num_envs": 32,
    "rollout_steps": 16,
    "hidden": 16,
    "latent_dim": 2,
    "eval_every": 1,
    "eval_episodes": 30,
    "checkpoint_every": 1,
    "threads": 1,
    "env_kwargs": {"domain": "restaurant", "segments": ["power", "core", "casual"], "max_turns": 20},
}
TINY: dict[str, Any] = {
    "budget_steps": 1024,
    "seeds": [0, 1],
    "jobs": 1,
    "held_out": ["thorough_expert"],
    "eval_episodes": 30,
    "fewshot_k": [0, 1, 3],
    "fewshot_episodes": 20,
    "fewshot_trials": 2,
    "train": TRAIN,
    "method": {
        "contextual": {"conversations_per_user": 2},
        "rl2": {"memory_dim": 8},
        "fomaml": {"meta_batch": 6, "minibatches": 2, "inner_conversations": 2, "outer_conversations": 3},
        "contextual_sac": {
            "num_envs": 16,
            "rollout_steps": 8,
            "learning_starts": 256,
            "batch_conversations": 8,
            "conversations_per_user": 2,
        },
        "agnostic_sac": {"num_envs": 16, "rollout_steps": 8, "learning_starts": 256, "batch_conversations": 8},
    },
}


def compromise(kwargs: dict[str, Any], n: int, seed: int) -> dict[str, Any]:
    return run_dialogues(make_policy("compromise", ObservationLayout(3)), n, seed=seed, **kwargs).summary()


def test_every_method_is_trained_measured_and_reported(tmp_path: Path) -> None:
    cfg = CompareConfig.from_dict(TINY)
    seen: list[tuple[int, int]] = []
    summary = run_comparison(cfg, tmp_path, {"compromise": compromise}, lambda d, t, s: seen.append((d, t)))
    assert seen[-1] == (len(METHODS) * 2 * 1024,) * 2
    assert sorted(p.name for p in (tmp_path / "jobs").iterdir()) == sorted(
        f"{m}-seed{s}.json" for m in METHODS for s in (0, 1)
    )
    methods = summary["methods"]
    assert list(methods) == list(METHODS)
    for name, m in methods.items():
        assert m["seeds"] == [0, 1]
        assert set(m["within"]) == {"power", "core", "casual", "thorough_expert"}
        for row in m["within"].values():
            assert row["mean_return"]["n"] == 2 and row["mean_return"]["std"] >= 0
        assert set(m["fewshot"]["thorough_expert"]) == {"0", "1", "3"}
        for curve in m["curves"]:
            assert curve[0]["step"] == 0 and curve[-1]["step"] >= 1024, name
            assert [p["step"] for p in curve] == sorted(p["step"] for p in curve)
        assert m["train_wall_s"]["mean"] > 0
    assert "id_accuracy" in methods["contextual"]["within"]["power"]
    assert "id_accuracy" in methods["rl2"]["within"]["power"]  # prototypes of its GRU state
    assert "id_accuracy" not in methods["fomaml"]["within"]["power"]
    assert "id_accuracy" in methods["contextual_sac"]["within"]["power"]
    assert "eval/adapted_return" in methods["fomaml"]["steps_to_level"]
    assert set(methods["rl2"]["steps_to_fraction"]) == {"0.8", "0.95"}
    timed = [m for m in methods.values() if m["wall_to_level"]["reached"] == m["wall_to_level"]["of"]]
    assert timed, "no method reached the level in every seed: the seconds to it are untested"
    for m in timed:  # seconds to the level, within the training time
        assert 0 <= m["wall_to_level"]["mean"] <= max(c[-1]["wall_time"] for c in m["curves"])
    assert 0 < summary["jobs_span_s"] <= summary["comparison_wall_s"]
    oracle = methods["oracle"]["mix_return"]["mean"]
    assert summary["efficiency_level"] == pytest.approx(0.9 * oracle)
    bars = [(c["name"].split()[0], c["name"].split()[-5]) for c in summary["checks"]]
    assert bars == [(m, o) for m in ("contextual", "contextual_sac") for o in ("fomaml", "rl2")]
    # "none": the oracle uses no earlier conversations, so every K has its K = 0 figure.
    few = methods["oracle"]["fewshot"]["thorough_expert"]
    assert few["0"] == few["1"] == few["3"]

    paths = write_outputs(summary, tmp_path / "out" / "compare.json")
    assert json.loads(paths["json"].read_text())["oracle_mix_return"] == pytest.approx(oracle)
    text = paths["markdown"].read_text()
    assert text == markdown(summary)
    for m in methods.values():
        assert m["label"] in text
    assert "thorough_expert (held out)" in text and "| K = 3 |" in text and "hand-written: compromise" in text
    assert text.count("state carried (trained carried over 2 per user)") == 2  # the contextual beliefs (PPO, SAC)
    assert (
        "| to 80% | to 95% | final mix return | training wall time to the level |" in text
        and "min for all runs, 1 at a time" in text
    )
    for key in ("efficiency", "fewshot"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[key].stat().st_size > 10_000

    # Run again: the finished jobs are loaded, nothing is trained.
    def no_training(*args: Any, **kwargs: Any) -> None:
        pytest.fail("a finished job was trained again")

    monkey = pytest.MonkeyPatch()
    monkey.setattr(PPOTrainer, "iteration", no_training)
    monkey.setattr(Trainer, "evaluate", no_training)
    try:
        again = run_comparison(cfg, tmp_path, {"compromise": compromise})
        assert again["methods"]["rl2"]["within"] == methods["rl2"]["within"]
        # A lost result is measured again from the saved run, which is finished: no training step.
        lost = tmp_path / "jobs" / "agnostic-seed1.json"
        before = json.loads(lost.read_text())
        lost.unlink()
        monkey.undo()
        monkey.setattr(PPOTrainer, "iteration", no_training)
        third = run_comparison(cfg, tmp_path, {"compromise": compromise})
    finally:
        monkey.undo()
    after = json.loads(lost.read_text())
    assert after["curve"] == before["curve"] and after["within"] == before["within"]
    assert third["methods"]["agnostic"]["mix_return"] == methods["agnostic"]["mix_return"]


def test_worker_processes(tmp_path: Path) -> None:
    cfg = CompareConfig.from_dict({**TINY, "methods": ["oracle", "agnostic"], "seeds": [3], "jobs": 2})
    seen: list[int] = []
    summary = run_comparison(cfg, tmp_path, None, lambda d, t, s: seen.append(d))
    assert seen and seen[-1] == 2 * 1024 and seen == sorted(seen)
    assert list(summary["methods"]) == ["oracle", "agnostic"] and summary["references"] == {}
    assert (tmp_path / "models" / "agnostic-seed3" / "card.json").is_file()


def test_steps_to_reach_interpolates() -> None:
    curve = [{"step": 0, "r": 1.0}, {"step": 100, "r": 5.0}, {"step": 200, "r": 9.0}, {"step": 300, "r": 7.0}]
    assert steps_to_reach(curve, 7.0, "r") == pytest.approx(150.0)
    assert steps_to_reach(curve, 0.5, "r") == 0.0
    assert steps_to_reach(curve, 9.5, "r") is None
    assert steps_to_reach([{"step": 5}], 0.0, "r") is None
    # In training seconds: the untrained start (no wall time) counts as 0 s.
    timed = [
        {"step": 0, "r": 1.0},
        {"step": 100, "r": 5.0, "wall_time": 10.0},
        {"step": 200, "r": 9.0, "wall_time": 30.0},
    ]
    assert steps_to_reach(timed, 7.0, "r", x="wall_time") == pytest.approx(20.0)
    assert steps_to_reach(timed, 3.0, "r", x="wall_time") == pytest.approx(5.0)


def reach(steps: list[float | None]) -> dict[str, Any]:
    return cmp._reach_summary(steps)


@pytest.mark.parametrize(
    ("ctx", "maml", "rl2", "expected"),
    [
        ([10.0, 10.0], [60.0, 40.0], [25.0, 15.0], [(True, 5.0), (True, 2.0)]),
        ([10.0, 30.0], [60.0, 40.0], [25.0, 15.0], [(False, 2.5), (False, 1.0)]),
        ([10.0, 10.0], [None, 40.0], [25.0, None], [(True, 100.0), (True, 100.0)]),
    ],
)
def test_bars_compare_steps_with_the_contextual_method(
    ctx: list[float | None], maml: list[float | None], rl2: list[float | None], expected: list[tuple[bool, float]]
) -> None:
    summary = {
        "config": {"budget_steps": 1000},
        "methods": {
            name: {"steps_to_level": {"eval/mean_return": reach(v)}}
            for name, v in (("contextual", ctx), ("fomaml", maml), ("rl2", rl2))
        },
    }
    got = cmp.checks(summary)
    assert [(c["pass"], pytest.approx(c["ratio"])) for c in got] == expected
    never = {
        **summary,
        "methods": {**summary["methods"], "contextual": {"steps_to_level": {"eval/mean_return": reach([None, 5.0])}}},
    }
    assert [c["pass"] for c in cmp.checks(never)] == [False, False]
    assert "contextual reached it in 1/2 seeds" in cmp.checks(never)[0]["detail"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"budget": 5}, r"unknown key budget \(did you mean budget_steps\?\); known keys: budget_steps, efficiency"),
        ({"methods": ["contextual", "pearl", "oracle"]}, "methods.1 = \"pearl\": Input should be 'contextual'"),
        ({"method": {"pearl": {}}}, "method.pearl = \"pearl\": Input should be 'contextual'"),
        ({"methods": ["contextual", "agnostic"]}, "needs the oracle"),
        ({"seeds": [1, 1]}, "seeds must be distinct"),
        ({"seeds": []}, r"seeds = \[\]: List should have at least 1 item"),
        ({"seeds": ["0"]}, 'seeds.0 = "0": Input should be a valid integer'),
        ({"fewshot_k": [1, 5]}, "fewshot_k must include 0"),
        ({"fewshot_k": [0, -1]}, "fewshot_k.1 = -1: Input should be greater than or equal to 0"),
        ({"budget_steps": 0}, "budget_steps = 0: Input should be greater than 0"),
        ({"jobs": "2"}, 'jobs = "2": Input should be a valid integer'),
        ({"efficiency_fraction": 1.5}, "efficiency_fraction = 1.5: Input should be less than or equal to 1"),
        ({"method": {"rl2": {"memory_dim": 0}}}, "method rl2: memory_dim = 0: Input should be greater than 0"),
        ({"method": {"fomaml": {"meta_batch": 5}}}, r"method fomaml: meta_batch \(5\) must be a multiple"),
        ({"train": {**TRAIN, "learning_rat": 1.0}}, r"method contextual: unknown key learning_rat \(did you mean"),
    ],
)
def test_bad_configs_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CompareConfig.from_dict({**TINY, **change})


def test_quick_table_lays_over_the_config() -> None:
    raw = {**TINY, "quick": {"budget_steps": 64, "train": {"eval_episodes": 7}, "method": {"rl2": {"memory_dim": 4}}}}
    full, quick = CompareConfig.from_toml(raw), CompareConfig.from_toml(raw, quick=True)
    assert (full.budget_steps, quick.budget_steps) == (1024, 64)
    assert quick.train["eval_episodes"] == 7 and quick.train["num_envs"] == TRAIN["num_envs"]
    assert quick.method["rl2"] == {"memory_dim": 4} and quick.method["fomaml"] == TINY["method"]["fomaml"]


@pytest.mark.parametrize(
    ("toml", "args", "fragment"),
    [
        (None, [], "no config file at"),
        ("budget_steps = [", [], "compare.toml: "),
        ("methods = ['oracle']\nheld_out = ['nobody']", [], 'held_out = ["nobody"]: unknown segment'),
        ("colour = 'blue'", [], "compare.toml: unknown key colour; known keys: budget_steps"),
        ("budget_steps = '10'", [], 'compare.toml: budget_steps = "10": Input should be a valid integer'),
        (
            "[train.env_kwargs]\nsegments = ['nobody']",
            [],
            '[train] env_kwargs = {"segments": ["nobody"]}: unknown segment',
        ),
        ("budget_steps = 10", ["--jobs", "0"], "'--jobs': Input should be greater than or equal to 1"),
    ],
)
def test_cli_errors_are_one_line(
    segdial: Callable[..., tuple[int, str, str]],
    tmp_path: Path,
    toml: str | None,
    args: list[str],
    fragment: str,
) -> None:
    path = tmp_path / "compare.toml"
    if toml is not None:
        path.write_text(toml)
    code, _, err = segdial("compare", "--config", str(path), "--out", str(tmp_path / "out"), *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err
    assert not (tmp_path / "out").exists()


def test_shipped_configs_parse() -> None:
    import tomllib

    raw = tomllib.loads((Path(__file__).resolve().parents[2] / "configs" / "compare.toml").read_text())
    for quick in (False, True):
        cfg = CompareConfig.from_toml(raw, quick=quick)
        assert cfg.methods == list(METHODS) and len(cfg.seeds) >= (2 if quick else 3)
        assert cfg.held_out == ["impatient_novice", "thorough_expert"]
        steps = {m: cfg.train_config(m, 0) for m in cfg.methods}
        # One budget; about the same turns per update for every PPO learner.
        assert {c.total_steps for c in steps.values()} == {cfg.budget_steps}
        ppo = {m: c for m, c in steps.items() if m != "fomaml" and not isinstance(c, SACConfig)}
        assert {c.num_envs * c.rollout_steps for c in ppo.values()} == {4096} and len(ppo) == 4
        # The two SAC methods differ in what they infer, not in how they learn.
        sac = [steps[m].model_dump() for m in ("contextual_sac", "agnostic_sac")]
        differ = {k for k in sac[0] if sac[0][k] != sac[1][k]}
        assert differ <= {"variant", "aux_coef", "conversations_per_user"}, differ
