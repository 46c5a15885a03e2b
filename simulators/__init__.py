"""Simulated users of each segment, as Gymnasium environments (the support MDPs of meta-RL).

Importing this package registers the environments, all in this one place:

- ``simulators/SegmentDialogue-v0``: ``SegmentDialogueEnv``, with ``SegmentDialogueVectorEnv`` as
  its ``vector_entry_point``. Keyword arguments: ``domain`` (a shipped domain name), ``segments``
  (segment names or ``SegmentProfile`` objects; default power/core/casual), ``max_turns``.
"""

from gymnasium.envs.registration import register, registry

ENV_ID = "simulators/SegmentDialogue-v0"

if ENV_ID not in registry:
    register(
        id=ENV_ID,
        entry_point="simulators.env:SegmentDialogueEnv",
        vector_entry_point="simulators.vector_env:SegmentDialogueVectorEnv",
        # The turn limit is part of the MDP (in the observation and the reward); the environment
        # enforces its own ``max_turns``, so no TimeLimit wrapper is added here.
        max_episode_steps=None,
    )

REGISTERED_IDS: tuple[str, ...] = (ENV_ID,)
