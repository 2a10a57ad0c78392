"""Limits and component manifests: required fields, validation, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from wasmactors.runtime import Limits, Manifest, ManifestError, MiB, parse_size

GOOD = """
name = "counter"
component = "build/counter.wasm"
[limits]
memory = "64 MiB"
fuel = 1_000_000
timeout-ms = 250
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "component.toml"
    path.write_text(text)
    return path


def test_manifest_gives_limits_and_resolves_the_component_path(tmp_path: Path) -> None:
    """Paths resolve against the manifest's folder; sizes and milliseconds convert."""
    manifest = Manifest.load(write(tmp_path, GOOD))
    assert manifest.name == "counter"
    assert manifest.component == (tmp_path / "build" / "counter.wasm").resolve()
    assert manifest.limits == Limits(memory=64 * MiB, fuel=1_000_000, timeout=0.25)


@pytest.mark.parametrize("field", ["memory", "fuel", "timeout-ms"])
def test_manifest_without_a_cpu_or_memory_limit_names_the_field(tmp_path: Path, field: str) -> None:
    """Memory and CPU limits are required; the error names the file and the missing field."""
    text = "\n".join(line for line in GOOD.splitlines() if not line.startswith(field))
    path = write(tmp_path, text)
    with pytest.raises(ManifestError, match=rf"component\.toml: .*missing required field `{field}`"):
        Manifest.load(path)


def test_manifest_without_limits_table_is_rejected(tmp_path: Path) -> None:
    """A manifest with no [limits] at all says so."""
    with pytest.raises(ManifestError, match="missing required field `limits`"):
        Manifest.load(write(tmp_path, 'component = "x.wasm"\n'))


def test_manifest_rejects_unknown_keys(tmp_path: Path) -> None:
    """Typos do not pass silently: the unknown key and its table are named."""
    with pytest.raises(ManifestError, match=r"key `limits`: .*unknown field `fule`"):
        Manifest.load(write(tmp_path, GOOD + "fule = 3\n"))


def test_manifest_rejects_wrong_types(tmp_path: Path) -> None:
    """A string where a number belongs is reported with its key path."""
    with pytest.raises(ManifestError, match=r"key `limits.fuel`: Expected `int`"):
        Manifest.load(write(tmp_path, GOOD.replace("1_000_000", '"lots"')))


def test_manifest_rejects_bad_sizes_and_non_positive_limits(tmp_path: Path) -> None:
    """Sizes must parse and budgets must be positive."""
    with pytest.raises(ManifestError, match="not a byte size"):
        Manifest.load(write(tmp_path, GOOD.replace('"64 MiB"', '"lots"')))
    with pytest.raises(ManifestError, match=r"limits.fuel"):
        Manifest.load(write(tmp_path, GOOD.replace("1_000_000", "0")))


def test_manifest_that_is_not_toml(tmp_path: Path) -> None:
    """Broken TOML is a ManifestError, not a decoder traceback."""
    with pytest.raises(ManifestError, match="not valid TOML"):
        Manifest.load(write(tmp_path, "[limits\n"))


def test_missing_manifest_file(tmp_path: Path) -> None:
    """A manifest path that does not exist is a ManifestError naming it."""
    with pytest.raises(ManifestError, match="cannot read manifest"):
        Manifest.load(tmp_path / "none.toml")


def test_example_manifests_are_valid() -> None:
    """The shipped examples' manifests parse."""
    root = Path(__file__).parents[1] / "examples"
    for path in root.glob("*/component.toml"):
        assert Manifest.load(path).limits.memory >= 13 * MiB


@pytest.mark.parametrize(
    ("text", "expected"),
    [(1024, 1024), ("512", 512), ("4 KiB", 4096), ("64MiB", 64 * MiB), ("1 GB", 10**9), ("1.5 KiB", 1536)],
)
def test_parse_size(text: int | str, expected: int) -> None:
    """Byte sizes accept ints and unit strings."""
    assert parse_size(text) == expected


def test_limits_reject_nonsense() -> None:
    """A Limits value cannot be built with a zero or negative budget."""
    with pytest.raises(ValueError, match="memory"):
        Limits(memory=0, fuel=1, timeout=1)
    with pytest.raises(ValueError, match="timeout"):
        Limits(memory=1, fuel=1, timeout=float("inf"))


def test_manifest_sets_the_per_call_budgets(tmp_path: Path) -> None:
    """Every budget a guest can exhaust has a manifest key; unset ones derive from the memory limit."""
    text = GOOD + (
        'max-outbox-bytes = "2 MiB"\nmax-storage-bytes = 4096\nmax-keys = 10\nmax-log-record = "1 KiB"\n'
        'max-log-bytes = "8 KiB"\nmax-request-timeout-ms = 9000\nmax-pending-requests = 3\n'
        'max-metadata = "1 KiB"\nmax-headers = 2\nmax-stored-bytes = "1 GiB"\n'
    )
    limits = Manifest.load(write(tmp_path, text)).limits
    assert (limits.outbox_bytes, limits.storage_bytes, limits.max_keys) == (2 * MiB, 4096, 10)
    assert (limits.max_log_record, limits.max_log_bytes) == (1024, 8192)
    assert (limits.max_request_timeout, limits.max_pending_requests) == (9.0, 3)
    assert (limits.max_metadata, limits.max_headers) == (1024, 2)
    assert limits.max_stored_bytes == 1024 * MiB
    defaults = Manifest.load(write(tmp_path, GOOD)).limits
    assert defaults.outbox_bytes == defaults.storage_bytes == 64 * MiB


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("max-storage-bytes = 0", "max_storage_bytes must be positive"),
        ('max-outbox-bytes = "lots"', "not a byte size"),
        ("max-pending-requests = -1", "limits.max-pending-requests"),
        ("max-request-timeout-ms = 0", "limits.max-request-timeout-ms"),
    ],
)
def test_manifest_refuses_bad_budgets(tmp_path: Path, line: str, says: str) -> None:
    """A budget that is not a positive size or count is an error naming it."""
    with pytest.raises(ManifestError, match=says):
        Manifest.load(write(tmp_path, GOOD + line + "\n"))
