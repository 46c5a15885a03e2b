"""Where the Rasa actions send turns: segdial's service layer in this process, or its HTTP API.

In-process (the default) the action server holds one ``Runtime`` (database, policy, NLU), loaded
once per process, and is a client of its own (``SEGDIAL_RASA_CLIENT``, default ``rasa``). With
``SEGDIAL_API_URL`` and ``SEGDIAL_API_KEY`` set, the same calls go to a running ``segdial serve``.

Both map Rasa's ``sender_id`` to a segdial conversation the same way: the conversation id the
actions stored in the ``segdial_conversation_id`` slot; failing that (in-process) the sender's
newest open conversation; failing that a new conversation with ``client_user_ref=sender_id``. A
conversation that has ended (the user said goodbye, or segdial closed it) is followed by a new
one on the sender's next message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import httpx
import torch

from dialogue.domain import Domain, DomainError, load_domain
from dialogue.service.conversations import Runtime, ServiceError
from dialogue.service.schemas import EndIn, ReplyOut, TurnIn
from dialogue.service.settings import Settings
from dialogue.service.startup import BAD_INPUT, StartupError, open_runtime
from dialogue.tracker import ObservationLayout

T = TypeVar("T")


class BackendUnavailableError(RuntimeError):
    """segdial could not be reached or refused the action server itself (not the user's message)."""


class Backend(Protocol):
    """The conversation calls the actions need."""

    domain: Domain
    max_text_chars: int  # the service's limit on a turn's text
    send_text: bool  # words go with mapped acts (see Settings.rasa_send_text)

    async def start(self, sender_id: str) -> str: ...

    async def open_conversation(self, sender_id: str) -> str | None: ...

    async def turn(self, conversation_id: str, body: TurnIn) -> ReplyOut: ...

    async def has_ended(self, conversation_id: str) -> bool: ...

    async def end(self, conversation_id: str, end: EndIn) -> None: ...


class InProcessBackend:
    """The service layer in this process (``Runtime``).

    Its calls are blocking (database, policy, NLU), so they run in a pool of
    ``SEGDIAL_WORKER_THREADS`` threads, as the HTTP service's routes do: the event loop keeps
    taking calls, and turns that wait on the database (a PostgreSQL commit) overlap.
    """

    def __init__(self, runtime: Runtime, client_name: str, domain: Domain, send_text: bool) -> None:
        self.runtime = runtime
        self.client_id = runtime.client_named(client_name)
        self.domain = domain
        self.max_text_chars = runtime.settings.max_text_chars
        self.send_text = send_text
        self._pool = ThreadPoolExecutor(runtime.settings.worker_threads, thread_name_prefix="segdial-turn")

    async def _run(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, call, *args)

    async def start(self, sender_id: str) -> str:
        return await self._run(self.runtime.start_conversation, self.client_id, self.domain.name, sender_id)

    async def open_conversation(self, sender_id: str) -> str | None:
        return await self._run(self.runtime.open_conversation_of, self.client_id, sender_id)

    async def turn(self, conversation_id: str, body: TurnIn) -> ReplyOut:
        return (await self._run(self.runtime.user_turn, self.client_id, conversation_id, body)).reply

    async def has_ended(self, conversation_id: str) -> bool:
        return (await self._run(self.runtime.conversation, self.client_id, conversation_id))["ended_at"] is not None

    async def end(self, conversation_id: str, end: EndIn) -> None:
        await self._run(self.runtime.end_conversation, self.client_id, conversation_id, end.outcome, end.rating)


class HttpBackend:
    """segdial's HTTP API (``POST /v1/conversations``, ``.../turns``, ``.../end``) with one API key."""

    def __init__(
        self, url: str, key: str, domain: Domain, timeout: float, max_text_chars: int, send_text: bool
    ) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.domain = domain
        self.max_text_chars = max_text_chars  # the API's limit, when it runs with the same settings
        self.send_text = send_text
        self.timeout = timeout
        self._clients: dict[int, httpx.AsyncClient] = {}  # one per event loop (a client is bound to its loop)

    def _client(self) -> httpx.AsyncClient:
        loop = id(asyncio.get_running_loop())
        if loop not in self._clients:
            self._clients[loop] = httpx.AsyncClient(
                base_url=self.url, headers={"X-API-Key": self.key}, timeout=self.timeout
            )
        return self._clients[loop]

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, params: dict[str, Any] | None = None
    ) -> Any:
        try:
            r = await self._client().request(method, path, json=body, params=params)
        except httpx.HTTPError as e:
            raise BackendUnavailableError(f"segdial API at {self.url} is unreachable: {type(e).__name__}: {e}") from e
        if r.status_code in (401, 403) or r.status_code >= 500:
            raise BackendUnavailableError(f"segdial API at {self.url} answered {r.status_code}: {_detail(r)}")
        if r.status_code >= 400:
            raise ServiceError(r.status_code, _detail(r))
        return r.json()

    async def start(self, sender_id: str) -> str:
        created = await self._call(
            "POST", "/v1/conversations", {"client_user_ref": sender_id, "domain": self.domain.name}
        )
        return str(created["id"])

    async def open_conversation(self, sender_id: str) -> str | None:
        found = await self._call(
            "GET", "/v1/conversations", params={"client_user_ref": sender_id, "open": "true", "limit": 1}
        )
        return str(found["conversations"][0]["id"]) if found["conversations"] else None

    async def turn(self, conversation_id: str, body: TurnIn) -> ReplyOut:
        return ReplyOut(
            **await self._call("POST", f"/v1/conversations/{conversation_id}/turns", body.model_dump(mode="json"))
        )

    async def has_ended(self, conversation_id: str) -> bool:
        return (await self._call("GET", f"/v1/conversations/{conversation_id}"))["ended_at"] is not None

    async def end(self, conversation_id: str, end: EndIn) -> None:
        await self._call("POST", f"/v1/conversations/{conversation_id}/end", end.model_dump())


def _detail(r: httpx.Response) -> str:
    try:
        detail = r.json().get("detail", r.text)
    except (ValueError, AttributeError):
        detail = r.text
    return detail if isinstance(detail, str) else str(detail)


async def take_turn(backend: Backend, sender_id: str, known: str | None, body: TurnIn) -> tuple[str, ReplyOut]:
    """Send one turn of ``sender_id`` (``known``: the conversation slot); returns the conversation id and the reply."""
    conversation_id = known or await backend.open_conversation(sender_id) or await backend.start(sender_id)
    try:
        return conversation_id, await backend.turn(conversation_id, body)
    except ServiceError as e:
        # A conversation that ended (or that this client cannot see) is followed by a new one.
        if e.status == 404 or (e.status == 409 and await backend.has_ended(conversation_id)):
            conversation_id = await backend.start(sender_id)
            return conversation_id, await backend.turn(conversation_id, body)
        raise


async def end_conversation(backend: Backend, sender_id: str, known: str | None, end: EndIn) -> str | None:
    """Record the outcome of the sender's conversation; returns its id (None when there was none)."""
    conversation_id = known or await backend.open_conversation(sender_id)
    if conversation_id is None:
        return None
    try:
        await backend.end(conversation_id, end)
    except ServiceError as e:
        if e.status != 409:  # 409: the outcome was recorded already (a retried call)
            raise
    return conversation_id


def open_backend(settings: Settings) -> Backend:
    """The backend the settings ask for (loads the policy and NLU in-process: a few seconds).

    Raises StartupError (``dialogue.service.startup``) with a one-line reason when the settings do not work."""
    try:
        domain = load_domain(settings.rasa_domain)
    except DomainError as e:
        raise StartupError(f"SEGDIAL_RASA_DOMAIN: {e}", BAD_INPUT) from e
    if settings.api_url:
        if not settings.api_key:
            raise StartupError("SEGDIAL_API_URL is set but SEGDIAL_API_KEY is not: the API needs a key", BAD_INPUT)
        return HttpBackend(
            settings.api_url,
            settings.api_key.get_secret_value(),
            domain,
            settings.api_timeout,
            settings.max_text_chars,
            settings.rasa_send_text,
        )
    torch.set_num_threads(settings.torch_threads)
    runtime = open_runtime(settings, serial_turns=True)  # threads that only run turns: see Runtime
    if ObservationLayout(domain.n_slots).size != runtime.agent.spec.obs_dim:
        runtime.close()
        raise StartupError(f"the policy at {settings.model_path} does not serve domain {domain.name!r}", BAD_INPUT)
    return InProcessBackend(runtime, settings.rasa_client, domain, settings.rasa_send_text)


class _Opened:
    """The backend of this process (the actions are built by rasa-sdk without arguments)."""

    backend: Backend | None = None


def install_backend(settings: Settings) -> Backend:
    """Open the backend of ``settings`` and make it the process's (``segdial actions`` does, before it listens)."""
    _Opened.backend = open_backend(settings)
    return _Opened.backend


def backend() -> Backend:
    """The process's backend: the installed one, or opened on first use from the SEGDIAL_* settings
    (rasa-sdk's own entry point, ``python -m rasa_sdk --actions dialogue.rasa_actions``)."""
    return _Opened.backend or install_backend(Settings())
