"""Concurrent turns and stateless replicas, on SQLite and on PostgreSQL (``database_url``).

Concurrency: threads post turns on one conversation at the same time through one ``TestClient``
(its requests run in the app's worker threads, each with its own database session); the stored
turn indexes must come out 0..k-1 with no gap and no duplicate, each 200 reply with its own index.

Statelessness: two app instances on one database, each behind its own client, serve alternate
turns of a conversation and must answer exactly as one instance serving all of its turns.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

N_THREADS = 8
TURNS_PER_THREAD = 4
MAX_ATTEMPTS = 40  # per thread: 409 "retry" answers allowed, a livelock is not
INFORMS = [
    [{"act": "inform", "slot": "area", "value": "centre"}],
    [{"act": "inform", "slot": "food", "value": "indian"}],
    [{"act": "inform", "slot": "pricerange", "value": "moderate", "confidence": 0.7}],
    [{"act": "negate", "slot": "area", "value": "east"}],
]


def post_concurrently(api: Any, cid: str, make_body: Callable[[int, int], dict[str, Any]]) -> list[tuple[int, Any]]:
    """``N_THREADS`` threads, released together, each posting up to ``TURNS_PER_THREAD`` turns.

    Returns every (status, body) seen. A thread stops early when the conversation has ended.
    """
    barrier = threading.Barrier(N_THREADS)
    lock = threading.Lock()
    seen: list[tuple[int, Any]] = []

    def work(thread: int) -> None:
        barrier.wait()
        done = 0
        for _ in range(MAX_ATTEMPTS):
            r = api.post_turn(cid, make_body(thread, done))
            with lock:
                seen.append((r.status_code, r.json()))
            if r.status_code == 200:
                done += 1
                if r.json()["ended"] or done == TURNS_PER_THREAD:
                    return
            elif r.status_code == 409 and "has ended" in r.json()["detail"]:
                return
            else:
                assert r.status_code == 409, r.text  # only "retry" is allowed besides success
        raise AssertionError(f"thread {thread}: no turn stored in {MAX_ATTEMPTS} attempts")

    with ThreadPoolExecutor(N_THREADS) as pool:
        for future in [pool.submit(work, i) for i in range(N_THREADS)]:
            future.result()  # re-raises a thread's failure (a 500 included)
    return seen


def test_concurrent_turns_get_distinct_gapless_indexes(api: Any, stored: Callable[[str], dict[str, Any]]) -> None:
    cid = api.create()
    seen = post_concurrently(api, cid, lambda thread, k: {"acts": INFORMS[(thread + k) % len(INFORMS)]})
    assert {status for status, _ in seen} <= {200, 409}
    replies = [body for status, body in seen if status == 200]
    indexes = [reply["turn_index"] for reply in replies]
    assert len(indexes) == len(set(indexes)), sorted(indexes)

    row = stored(cid)
    k = len(row["turns"])
    assert [t["turn_index"] for t in row["turns"]] == list(range(k))
    assert row["turn_count"] == k
    assert sorted(indexes) == list(range(k))  # every stored turn was answered, every answer stored
    by_index = {t["turn_index"]: t["reply"] for t in row["turns"]}
    assert all(by_index[reply["turn_index"]] == reply for reply in replies)
    ended = any(reply["ended"] for reply in replies)
    assert k == N_THREADS * TURNS_PER_THREAD or ended
    # The belief absorbed every stored turn exactly once (the users here never say bye).
    assert row["state"]["belief"]["turns"] == k


def test_concurrent_retries_of_one_turn_store_it_once(api: Any, stored: Callable[[str], dict[str, Any]]) -> None:
    cid = api.create()
    api.turn(cid, INFORMS[0])
    body = {"acts": INFORMS[1], "idempotency_key": "the-one"}
    seen = post_concurrently(api, cid, lambda thread, k: body if k == 0 else {"acts": INFORMS[2]})
    first_replies = [b for status, b in seen if status == 200 and b["turn_index"] == 1]
    assert {status for status, _ in seen} <= {200, 409}
    row = stored(cid)
    keyed = [t for t in row["turns"] if t["idempotency_key"] == "the-one"]
    assert len(keyed) == 1 and keyed[0]["turn_index"] == 1
    # Every thread whose keyed request succeeded got the one stored reply.
    assert first_replies and all(reply == keyed[0]["reply"] for reply in first_replies)
    assert [t["turn_index"] for t in row["turns"]] == list(range(len(row["turns"])))


SEQUENCE: list[dict[str, Any]] = [
    {"text": "hi", "acts": [{"act": "hello"}]},
    {"text": "In the north.", "acts": [{"act": "inform", "slot": "area", "value": "north", "confidence": 0.9}]},
    {"acts": [{"act": "dont_know"}], "text": "hmm, I'm not really sure, what are the options?"},
    {"acts": [{"act": "inform", "slot": "food", "value": "french", "confidence": 0.55}]},
    {"acts": [{"act": "inform", "slot": "pricerange", "value": "expensive"}], "text": "expensive"},
    {"acts": [{"act": "affirm"}]},
    {"acts": [{"act": "request", "slot": "address"}], "text": "What is the address?"},
]


def without_id(reply: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in reply.items() if k != "conversation_id"}


def test_two_instances_serving_alternate_turns_answer_like_one(
    database_url: str, make_app: Callable[[str], FastAPI], make_key: Callable[[str], str], make_api: Any
) -> None:
    key = make_key("replicas")
    with TestClient(make_app(database_url)) as one, TestClient(make_app(database_url)) as two:
        assert one.app is not two.app
        alone, first, second = make_api(one, key), make_api(one, key), make_api(two, key)
        single = alone.create()
        shared = second.create()  # created on the second instance, first turn served by the first
        served_alone, served_shared = [], []
        for i, body in enumerate(SEQUENCE):
            served_alone.append(alone.turn(single, **body))
            served_shared.append((first if i % 2 == 0 else second).turn(shared, **body))
            if served_alone[-1]["ended"]:
                break
        assert len(served_alone) >= 4
        assert [without_id(r) for r in served_shared] == [without_id(r) for r in served_alone]
        # Either instance reads the same stored conversation.
        from_one, from_two = first.get(shared), second.get(shared)
        assert from_one == from_two
        assert [t["reply"] for t in from_one["turns"]] == served_shared
