"""Request and response bodies of the service (pydantic), shared by the HTTP routes and in-process callers."""

from __future__ import annotations

from pydantic import BaseModel, Field

NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL characters: reject them as bad input


class UserActIn(BaseModel):
    act: str = Field(description="User act type: inform, request, affirm, negate, dont_know, book, relax, bye, ...")
    slot: str | None = Field(
        default=None, description="Slot of the act (informable, requestable or booking)", pattern=NO_NUL
    )
    value: str | None = Field(default=None, description="Value of an informed slot", pattern=NO_NUL)
    confidence: float = Field(default=1.0, ge=0.0, le=1.0, description="NLU confidence of the value")


class ConversationIn(BaseModel):
    client_user_ref: str | None = Field(default=None, max_length=200, pattern=NO_NUL)
    domain: str = "restaurant"


class TurnIn(BaseModel):
    text: str | None = Field(
        default=None, description="The user's utterance; read by the NLU when no acts are sent", pattern=NO_NUL
    )
    acts: list[UserActIn] = Field(default_factory=list, description="Structured user acts (bypass the NLU)")
    idempotency_key: str | None = Field(default=None, max_length=200, pattern=NO_NUL)


class EndIn(BaseModel):
    outcome: str = Field(pattern="^(success|failure|abandoned)$")
    rating: int | None = Field(default=None, ge=1, le=5)


class OfferOut(BaseModel):
    name: str = Field(description="The entity offered")
    values: dict[str, str] = Field(description="Its informable values, slot by slot")
    relaxed: str | None = Field(
        default=None, description="Nothing matched every constraint: the one this nearest alternative drops"
    )


class ReplyOut(BaseModel):
    conversation_id: str
    turn_index: int
    system_act: str
    system_slot: str | None
    system_value: str | None = Field(default=None, description="The value a confirm checks")
    system_text: str
    segment: str | None
    confidence: float | None
    segment_probabilities: dict[str, float]
    posterior_mean: list[float]
    posterior_variance: list[float]
    ended: bool
    offer: OfferOut | None = Field(default=None, description="The entity named by an offer")
    booking: dict[str, str] | None = Field(
        default=None, description="The booking made this turn: the entity and every booking detail"
    )
    handover: bool = Field(default=False, description="Route the user to a person (see handover_reason)")
    handover_reason: str | None = None
    guarded: bool = Field(
        default=False, description="The policy's act would have repeated a third time; its next-best act was sent"
    )
