"""Few-shot adaptation (``metarl_core.fewshot``) and ``play(..., context_episodes=K)``.

- With ``context_episodes=K`` the policy's state is carried across K conversations and reset
  after the (K+1)-th, column by column; only every (K+1)-th conversation is recorded, and with
  K = 0 ``play`` behaves as it always did.
- ``fewshot_returns``: ``context`` plays K + 1 conversations per recorded one; ``gradient`` adapts
  on K sampled conversations per trial (and its K = 0 is the plain policy); ``none`` gives one
  figure for every K; bad arguments are refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from dialogue.tracker import ObservationLayout
from metarl_core.evaluation import play
from metarl_core.fewshot import fewshot_returns
from metarl_core.inference import Agent, PolicyState

ENV_ID = "simulators:simulators/SegmentDialogue-v0"
SEGMENT = {"domain": "restaurant", "segments": ["impatient_novice"], "max_turns": 20}
TURN = ObservationLayout(3).turn


class Watched(Agent):
    """An agent that records, at every step, which rows start a conversation and the turns its
    state had seen before the step."""

    def __init__(self, agent: Agent) -> None:
        super().__init__(agent.model, agent.card)
        self.starts: list[np.ndarray] = []
        self.turns_before: list[np.ndarray] = []

    def step(self, obs: Any, mask: Any, belief: PolicyState, **kwargs: Any) -> Any:
        self.starts.append(np.asarray(obs)[:, TURN] == 0)
        self.turns_before.append(belief.turns.numpy().copy())
        return super().step(obs, mask, belief, **kwargs)


@pytest.mark.parametrize("variant", ["contextual", "rl2"])
@pytest.mark.parametrize("k", [0, 2])
def test_state_is_carried_across_k_conversations(
    variant: str, k: int, exported: Callable[[str], Any], rl2_agent: Agent
) -> None:
    base = Agent.load(exported("contextual").path) if variant == "contextual" else rl2_agent
    agent = Watched(base)
    rec = play(agent, ENV_ID, SEGMENT, 16, seed=3, batch=8, context_episodes=k)
    assert len(rec.returns) == 16
    starts, turns = np.stack(agent.starts), np.stack(agent.turns_before)
    for col in range(8):
        conversation = np.cumsum(starts[:, col]) - 1  # index of the conversation each step is in
        fresh = starts[:, col] & (conversation % (k + 1) == 0)
        assert (turns[fresh, col] == 0).all(), "the state was not reset at a trial start"
        carried = starts[:, col] & (conversation % (k + 1) != 0)
        assert (turns[carried, col] > 0).all(), "the state was reset inside a trial"
        assert conversation[-1] + 1 >= 2 * (k + 1), "each column records two conversations"
    if k:
        assert starts[:, 0].sum() > 2, "vacuous: no carried conversation"


def test_context_zero_is_the_plain_play(exported: Callable[[str], Any]) -> None:
    agent = Agent.load(exported("contextual").path)
    a = play(agent, ENV_ID, SEGMENT, 40, seed=9, batch=20)
    b = play(agent, ENV_ID, SEGMENT, 40, seed=9, batch=20, context_episodes=0)
    for field in ("returns", "lengths", "predicted", "posteriors"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_fewshot_modes(exported: Callable[[str], Any], rl2_agent: Agent) -> None:
    agnostic = Agent.load(exported("agnostic").path)
    seen: list[int] = []
    grad = fewshot_returns(
        agnostic, "gradient", ENV_ID, SEGMENT, [0, 2], episodes=30, trials=3, seed=1, progress=seen.append
    )
    assert seen == [30, 30] and grad[2]["episodes"] == 30
    plain = play(agnostic, ENV_ID, SEGMENT, 30, seed=1)
    assert grad[0]["mean_return"] == pytest.approx(float(plain.returns.mean()))
    none = fewshot_returns(agnostic, "none", ENV_ID, SEGMENT, [0, 1, 5], episodes=30, seed=1)
    assert none[0] == none[1] == none[5] == grad[0]
    ctx = fewshot_returns(rl2_agent, "context", ENV_ID, SEGMENT, [0, 1], episodes=30, seed=1)
    assert set(ctx) == {0, 1} and all(np.isfinite(v["mean_return"]) for v in ctx.values())


@pytest.mark.parametrize(
    ("how", "ks", "message"),
    [("magic", [0], "how must be one of"), ("context", [-1], "K must be zero or more")],
)
def test_fewshot_refuses_bad_arguments(exported: Callable[[str], Any], how: str, ks: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fewshot_returns(Agent.load(exported("agnostic").path), how, ENV_ID, SEGMENT, ks)  # type: ignore[arg-type]


def test_gradient_adaptation_needs_a_reactive_policy(exported: Callable[[str], Any]) -> None:
    with pytest.raises(ValueError, match="policy of the observation alone"):
        fewshot_returns(Agent.load(exported("contextual").path), "gradient", ENV_ID, SEGMENT, [1])


@pytest.fixture(scope="module")
def rl2_agent() -> Agent:
    from metarl_core.networks import ActorCritic, NetworkSpec

    torch.manual_seed(0)
    return Agent(ActorCritic(NetworkSpec(obs_dim=ObservationLayout(3).size, n_actions=12, variant="rl2", memory_dim=8)))


def test_context_fewshot_makes_the_k_conversations_one_users(
    exported: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import metarl_core.fewshot as fewshot

    seen: list[dict[str, Any]] = []

    def spy(agent: Agent, env_id: str, env_kwargs: dict[str, Any], episodes: int, **kw: Any) -> Any:
        seen.append(dict(env_kwargs))
        return play(agent, env_id, env_kwargs, episodes, **kw)

    monkeypatch.setattr(fewshot, "play", spy)
    agent = Agent.load(exported("contextual").path)
    fewshot_returns(
        agent, "context", ENV_ID, SEGMENT, [0, 3], episodes=8, returning_user_kwarg="conversations_per_user"
    )
    assert "conversations_per_user" not in seen[0]
    assert seen[1]["conversations_per_user"] == 4
    fewshot_returns(agent, "context", ENV_ID, SEGMENT, [3], episodes=8)
    assert "conversations_per_user" not in seen[2]


def test_one_users_conversations_are_played_in_one_row() -> None:
    from metarl_core.evaluation import make_vec
    from metarl_core.fewshot import _as_episodes, _conversations
    from metarl_core.networks import ActorCritic, NetworkSpec

    torch.manual_seed(0)
    model = ActorCritic(NetworkSpec(obs_dim=ObservationLayout(3).size, n_actions=12, variant="agnostic"))
    envs = make_vec(ENV_ID, 1, **SEGMENT, conversations_per_user=5)
    obs, info = envs.reset(seed=2)
    params = info["user_params"].copy()
    convs, obs, info = _conversations(model, envs, obs, info, 3, sample=True)
    assert len(convs) == 3 and info["conversation_index"][0] == 3
    np.testing.assert_array_equal(info["user_params"], params)
    assert all(c["dones"][-1] == 1 and not any(c["dones"][:-1]) for c in convs)
    ep = _as_episodes(convs)
    assert ep.obs.shape[1] == 3 and ep.turns == sum(len(c["obs"]) for c in convs)


def test_gradient_fewshot_with_returning_users(exported: Callable[[str], Any]) -> None:
    agnostic = Agent.load(exported("agnostic").path)
    out = fewshot_returns(
        agnostic, "gradient", ENV_ID, SEGMENT, [0, 2], episodes=12, trials=3, seed=1,
        returning_user_kwarg="conversations_per_user",
    )  # fmt: skip
    assert out[2]["episodes"] == 12 and np.isfinite(out[2]["mean_return"])
    plain = fewshot_returns(agnostic, "gradient", ENV_ID, SEGMENT, [0], episodes=12, trials=3, seed=1)
    assert out[0] == plain[0]
