"""Payload transport properties, checked with generated inputs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hypothesis import given, settings
from hypothesis import strategies as st

from wasmactors.runtime import Instance, Limits, MiB, Success

if TYPE_CHECKING:
    from collections.abc import Mapping

    from wasmactors.runtime import Component

LIMITS = Limits(memory=4 * MiB, fuel=10**8, timeout=5.0)


def test_any_bytes_round_trip_through_the_echo_guest(wat: Mapping[str, Component]) -> None:
    """Whatever the bytes (ASCII or not, NULs, any length up to 64 KiB), the echo returns them."""
    with Instance(wat["echo"], LIMITS) as inst:

        @settings(max_examples=300, deadline=None)
        @given(st.binary(max_size=65536))
        def round_trip(payload: bytes) -> None:
            assert inst.handle_message(payload, request=True).outcome == Success(payload)

        round_trip()


def test_headers_and_sender_do_not_disturb_the_payload(wat: Mapping[str, Component]) -> None:
    """Arbitrary header lists and sender addresses leave the payload intact."""
    with Instance(wat["echo"], LIMITS) as inst:

        @settings(max_examples=200, deadline=None)
        @given(
            st.binary(max_size=256),
            st.lists(st.tuples(st.text(max_size=20), st.text(max_size=20)), max_size=5),
            st.none() | st.text(min_size=1, max_size=30),
        )
        def check(payload: bytes, headers: list[tuple[str, str]], sender: str | None) -> None:
            result = inst.handle_message(payload, sender=sender, request=True, headers=headers)
            assert result.outcome == Success(payload)

        check()
