"""Request and response bodies of the service (pydantic), shared by the HTTP routes and in-process callers.

Strings from clients are stored and sent back, so they must be text that PostgreSQL and JSON can
hold: no NUL character (``NO_NUL``, in the schema) and no unpaired UTF-16 surrogate (a JSON
``"\\ud800"``; no JSON Schema keyword says so, the validator refuses it). Floats must be finite.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL characters: reject them as bad input


def encodable(text: str) -> str:
    """``text`` if it encodes as UTF-8 (no unpaired surrogate); else a ValueError that does not echo it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("has an unpaired UTF-16 surrogate (not valid Unicode text)") from None
    return text


Text = Annotated[str, StringConstraints(pattern=NO_NUL), AfterValidator(encodable)]


class UserActIn(BaseModel):
    act: str = Field(description="User act type: inform, request, affirm, negate, dont_know, book, relax, bye, ...")
    slot: Text | None = Field(default=None, description="Slot of the act (informable, requestable or booking)")
    value: Text | None = Field(default=None, description="Value of an informed slot")
    confidence: float = Field(
        default=1.0, ge=0.0, le=1.0, allow_inf_nan=False, description="NLU confidence of the value"
    )


class ConversationIn(BaseModel):
    client_user_ref: Text | None = Field(default=None, max_length=200)
    domain: str = "restaurant"


class TurnIn(BaseModel):
    """A user turn: text, structured acts, or both (the schema says so, the service checks it).

    Text of only spaces is a turn the NLU understands nothing of, as any text it cannot read.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["text"], "properties": {"text": {"type": "string"}}},
                {"required": ["acts"], "properties": {"acts": {"minItems": 1}}},
            ]
        }
    )

    text: Text | None = Field(default=None, description="The user's utterance; read by the NLU when no acts are sent")
    acts: list[UserActIn] = Field(default_factory=list, description="Structured user acts (bypass the NLU)")
    idempotency_key: Text | None = Field(default=None, max_length=200)


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
