"""Domains as data: loading, value codes, the generated knowledge base and ``MatchTable`` counts.

``MatchTable.count`` and ``count_batch`` are checked against a brute-force count over
``domain.entities`` for every constraint vector (UNKNOWN, DONTCARE and every value in every slot)
and for random batches, in both shipped domains.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dialogue.domain import DONTCARE, UNKNOWN, Domain, DomainError, available_domains, load_domain


def brute_count(domain: Domain, values: tuple[int, ...] | list[int]) -> int:
    """Entities whose value agrees with every constrained (positive) code, counted one by one."""
    n = 0
    for entity in domain.entities:
        if all(v in (UNKNOWN, DONTCARE) or v == ev for v, ev in zip(values, entity.values, strict=True)):
            n += 1
    return n


def all_constraint_vectors(domain: Domain) -> list[tuple[int, ...]]:
    return list(itertools.product(*[[DONTCARE, UNKNOWN, *range(1, n + 1)] for n in domain.n_values]))


def test_codes() -> None:
    assert UNKNOWN == 0
    assert DONTCARE == -1


def test_shipped_domains_are_available() -> None:
    assert {"restaurant", "hotel"} <= set(available_domains())


def test_unknown_domain_raises_domain_error_naming_the_known_ones() -> None:
    with pytest.raises(DomainError, match=r"unknown domain 'atlantis'.*restaurant"):
        load_domain("atlantis")
    assert issubclass(DomainError, ValueError)


def test_domain_structure(domain: Domain) -> None:
    assert domain.n_slots == len(domain.slots) == len(domain.values) >= 2
    assert domain.n_values == tuple(len(v) for v in domain.values)
    assert all(n >= 2 for n in domain.n_values)
    assert domain.requestable and domain.booking
    assert len(domain.entities) > 0
    for entity in domain.entities:
        assert len(entity.values) == domain.n_slots
        assert all(1 <= v <= n for v, n in zip(entity.values, domain.n_values, strict=True))
        assert set(entity.info) == set(domain.requestable)
    assert len({e.name for e in domain.entities}) == len(domain.entities)


def test_knowledge_base_is_deterministic(domain: Domain) -> None:
    again = load_domain.__wrapped__(domain.name)  # bypass the cache: build it again from the file
    assert again is not domain
    assert again.entities == domain.entities
    np.testing.assert_array_equal(again.matches.counts, domain.matches.counts)


def test_value_code_and_name_round_trip(domain: Domain) -> None:
    for k, slot in enumerate(domain.slots):
        for i, value in enumerate(domain.values[k]):
            code = domain.value_code(slot, value)
            assert code == i + 1
            assert domain.value_name(k, code) == value
        assert domain.value_code(slot, "dontcare") == DONTCARE
        assert domain.value_name(k, DONTCARE) == "dontcare"


def test_value_code_errors(domain: Domain) -> None:
    slot = domain.slots[0]
    with pytest.raises(DomainError, match="unknown slot 'colour'"):
        domain.value_code("colour", "red")
    with pytest.raises(DomainError, match=f"unknown value 'nowhere' for slot '{slot}'"):
        domain.value_code(slot, "nowhere")


def test_value_name_rejects_invalid_codes(domain: Domain) -> None:
    for code in (UNKNOWN, -2, domain.n_values[0] + 1):
        with pytest.raises(DomainError, match="not valid"):
            domain.value_name(0, code)


def test_match_table_counts_every_constraint_vector(domain: Domain) -> None:
    vectors = all_constraint_vectors(domain)
    expected = np.array([brute_count(domain, v) for v in vectors])
    scalar = np.array([domain.matches.count(v) for v in vectors])
    np.testing.assert_array_equal(scalar, expected)
    batch = domain.matches.count_batch(np.array(vectors, dtype=np.int64))
    np.testing.assert_array_equal(batch, expected)
    # matching() agrees with the counts, and the full-wildcard vector matches everything.
    for v in vectors[:: max(1, len(vectors) // 50)]:
        assert len(domain.matching(v)) == domain.matches.count(v)
    assert domain.matches.count([UNKNOWN] * domain.n_slots) == len(domain.entities)
    assert (expected == 0).any(), "some constraint combination should match nothing"


def test_match_table_random_batches(domain: Domain) -> None:
    rng = np.random.default_rng(1)
    high = np.array(domain.n_values)
    values = rng.integers(-1, high + 1, size=(500, domain.n_slots))
    counts = domain.matches.count_batch(values)
    assert counts.shape == (500,)
    for row, c in zip(values, counts, strict=True):
        assert c == brute_count(domain, row.tolist()) == domain.matches.count(row.tolist())
