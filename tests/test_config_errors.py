"""Mistakes a newcomer makes are named plainly: topology and manifest errors
at load, with the fix (the valid values of an enum, the closest key to a
typo, a memory size without its unit), and a failed spawn as itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wasmactors.actors import ActorSystem, Topology, TopologyError
from wasmactors.runtime import Engine, Manifest, ManifestError, MemoryStorage, NotWasmError

if TYPE_CHECKING:
    from pathlib import Path


def test_a_misspelt_topology_key_suggests_the_closest(tmp_path: Path) -> None:
    """`compnent` is refused with `component` suggested, naming the file and where."""
    path = tmp_path / "t.toml"
    path.write_text('[[child]]\ntype = "actor"\nname = "a"\ncompnent = "x.wasm"\n')
    with pytest.raises(TopologyError) as error:
        Topology.load(path)
    assert str(error.value) == (
        f"{path}: key `child[0]`: Object contains unknown field `compnent`; did you mean `component`?"
    )


def test_a_wrong_enum_value_lists_the_valid_ones(tmp_path: Path) -> None:
    """A strategy that is not one lists the three there are and the closest."""
    path = tmp_path / "t.toml"
    path.write_text('strategy = "one-for-al"\n')
    with pytest.raises(TopologyError) as error:
        Topology.load(path)
    message = str(error.value)
    assert message.startswith(f"{path}: key `strategy`: Invalid enum value 'one-for-al' (valid: ")
    assert all(s in message for s in ("one-for-one", "one-for-all", "rest-for-one"))
    assert message.endswith("did you mean 'one-for-all'?")


@pytest.mark.parametrize("memory", ["64", '"64"', '"100 B"'])
def test_a_memory_size_without_a_unit_is_refused_at_load(memory: str) -> None:
    """`memory = 64` would be 64 bytes: refused when the manifest loads, naming the key."""
    text = f'component = "x.wasm"\n[limits]\nmemory = {memory}\nfuel = 1\ntimeout-ms = 1\n'
    with pytest.raises(ManifestError, match=r"key `limits.memory`: .* give a unit, e\.g\. memory = "):
        Manifest.parse(text)


def test_a_misspelt_manifest_key_suggests_the_closest() -> None:
    """A typo inside [limits] gets the closest limit's name."""
    text = 'component = "x.wasm"\n[limits]\nmemory = "8 MiB"\nfule = 1\ntimeout-ms = 1\n'
    with pytest.raises(ManifestError, match=r"unknown field `fule`; did you mean `fuel`\?"):
        Manifest.parse(text)


@pytest.mark.anyio
async def test_a_failed_spawn_in_an_actor_system_block_is_the_single_error(
    engine: Engine, tmp_path: Path
) -> None:
    """The block's own error leaves `async with ActorSystem()` as itself, not in an ExceptionGroup."""
    with pytest.raises(NotWasmError, match="cannot read"):
        async with ActorSystem(engine=engine, storage=MemoryStorage()) as system:
            await system.spawn("x", tmp_path / "missing.wasm")
