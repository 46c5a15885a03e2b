"""``/v1/analytics``: the report's figures over HTTP, for one client's conversations in a time window.

Every route calls the same ``dialogue.analytics`` functions as ``segdial report``, so for the same
window and the same conversations it returns the same numbers. A client sees only the
conversations it created with its own API key. ``since``/``until`` are ISO 8601 times from 1900 to
2999 (UTC when no offset is given; a bare number is not one); conversations with
``since <= created_at < until`` count, so ``since >= until`` is an empty window with empty figures.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query

from dialogue import analytics
from dialogue.service.deps import ClientDep, RuntimeDep
from dialogue.service.errors import responses

router = APIRouter(prefix="/v1/analytics", tags=["analytics"], responses=responses(401, 422))
# The pattern is documented; parse_time checks it (with a message that says what a time looks like).
Time = Annotated[str | None, Query(max_length=40, json_schema_extra={"pattern": analytics.ISO_TIME_PATTERN})]


def get_window(
    client: ClientDep,
    since: Annotated[Time, Query(description="Conversations created at or after this ISO 8601 time")] = None,
    until: Annotated[Time, Query(description="Conversations created before this ISO 8601 time")] = None,
) -> analytics.Window:
    try:
        bounds = [analytics.parse_time(t) if t is not None else None for t in (since, until)]
        return analytics.Window(bounds[0], bounds[1], client_id=client.id())
    except ValueError as e:
        raise HTTPException(422, str(e)) from e


WindowDep = Annotated[analytics.Window, Depends(get_window)]
Threshold = Annotated[
    float, Query(gt=0.0, le=1.0, description="Probability a read-out needs to count as identifying the user")
]


@router.get("/segments")
def segments(
    window: WindowDep, runtime: RuntimeDep, threshold: Threshold = analytics.DEFAULT_THRESHOLD
) -> dict[str, Any]:
    """Segment mix over time, turns to identification, and outcomes per inferred segment."""
    known = runtime.agent.segments
    with runtime.reads() as session:
        return {
            "window": window.to_json(),
            "overview": analytics.overview(session, window),
            "segment_mix": analytics.segment_mix(session, window, known),
            "turns_to_identification": analytics.turns_to_identification(session, window, threshold, known),
            "outcomes": analytics.outcomes_by_segment(session, window, known),
        }


@router.get("/calibration")
def calibration(window: WindowDep, runtime: RuntimeDep) -> dict[str, Any]:
    """True against inferred segment and the calibration of the segment probabilities (simulated users)."""
    with runtime.reads() as session:
        return {
            "window": window.to_json(),
            "confusion": analytics.confusion(session, window, runtime.agent.segments),
            "calibration": analytics.calibration(session, window),
        }


@router.get("/trajectories")
def trajectories(window: WindowDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Posterior means of sample conversations in 2-D, with the loaded policy's segment prototypes."""
    agent = runtime.agent
    with runtime.reads() as session:
        return {
            "window": window.to_json(),
            "trajectories": analytics.belief_trajectories(
                session, window, agent.card.prototypes if agent.card else (), agent.segments
            ),
        }


@router.get("/report")
def report(
    window: WindowDep, runtime: RuntimeDep, threshold: Threshold = analytics.DEFAULT_THRESHOLD
) -> dict[str, Any]:
    """Every figure of the report (the same JSON as ``segdial report``'s figures.json, without its source)."""
    agent = runtime.agent
    with runtime.reads() as session:
        return analytics.all_figures(
            session,
            window,
            segments=agent.segments,
            prototypes=agent.card.prototypes if agent.card else (),
            model_path=runtime.settings.model_path,
            threshold=threshold,
        )
