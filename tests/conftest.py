"""Shared fixtures: one engine per session with a persistent artifact cache,
compiled guests, and the anyio backends every async test runs on."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import pytest

from tests.guests import ROOT, python_guest, wat_guest
from tests.nats_server import NatsServer, running_nats_server
from wasmactors.actors import ActorSystem
from wasmactors.runtime import Component, Engine, Limits, MemoryStorage, MiB

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

#: Compiled artifacts survive between runs of the suite (build/ is ignored by git).
CACHE = ROOT / "build" / "test-cache"

#: Generous limits for well-behaved calls.
LIMITS = Limits(memory=64 * MiB, fuel=500_000_000, timeout=5.0)
#: Actor tests: limits for WAT guests and for Python guests.
WAT = Limits(memory=4 * MiB, fuel=10**8, timeout=2.0)
PY = Limits(memory=64 * MiB, fuel=10**10, timeout=2.0)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs on asyncio and on trio."""
    return str(request.param)


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    with Engine(cache_dir=CACHE) as eng:
        yield eng


@pytest.fixture(scope="session")
def wat(engine: Engine) -> dict[str, Component]:
    """Every WAT guest, compiled once."""
    names = [p.stem for p in (ROOT / "tests" / "guests" / "wat").glob("*.wat") if p.stem != "shell"]
    return {name: engine.load(wat_guest(name), name=name) for name in names}


@pytest.fixture(scope="session")
def kitchen(engine: Engine) -> Component:
    return engine.load(python_guest("kitchen"))


@pytest.fixture(scope="session")
def counter(engine: Engine) -> Component:
    return engine.load(python_guest("counter"))


@pytest.fixture
async def system(engine: Engine) -> AsyncIterator[ActorSystem]:
    """An actor system with in-memory storage and a short shutdown; test
    modules that need other settings define their own."""
    async with ActorSystem(engine=engine, storage=MemoryStorage(), shutdown_timeout=0.5) as sys:
        yield sys


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One real nats-server with JetStream for the session; each test uses its
    own cluster prefix (subjects and bucket), so tests do not see each other."""
    yield from running_nats_server(tmp_path_factory.mktemp("jetstream"))


_prefixes = itertools.count()


@pytest.fixture
def prefix() -> str:
    """A cluster namespace (subjects and KV bucket) of this test's own."""
    return f"t{next(_prefixes)}"
