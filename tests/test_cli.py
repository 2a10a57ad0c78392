"""The `wasmactors` command line: call, inspect, build and run, and how each
reports a failure (one line, a documented exit code, never a traceback)."""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests.conftest import CACHE
from tests.guests import ROOT, python_guest, wat_guest
from wasmactors._cli import main
from wasmactors.runtime import Engine
from wasmactors.runtime._cache import cache_entries

if TYPE_CHECKING:
    from pathlib import Path

COUNTER = ROOT / "examples" / "counter" / "component.toml"


@pytest.fixture(autouse=True)
def _test_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands compile into the suite's artifact cache, not the user's."""
    monkeypatch.setenv("WASMACTORS_CACHE_DIR", str(CACHE))


def cli(*argv: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def wat_file(tmp_path: Path, name: str, text: bytes | None = None) -> Path:
    path = tmp_path / f"{name}.wat"
    path.write_bytes(text if text is not None else wat_guest(name))
    return path


# -- call ----------------------------------------------------------------------


def test_call_prints_the_reply_host_calls_logs_and_fuel() -> None:
    """A call through a manifest shows the reply, each host call with its
    result, the guest's log lines and the fuel used against its budget."""
    code, out, err = cli("call", COUNTER, "add 5")
    assert code == 0, err
    assert "reply      '5'" in out
    assert "storage.get('total') -> ok none" in out
    assert "storage.set('total', 1 B) -> ok" in out
    assert "services.log(debug, 'total is now 5')" in out
    assert "debug   total is now 5" in out
    assert "of 200,000,000" in out  # the manifest's fuel budget


def test_call_keeps_state_in_the_storage_file_given(tmp_path: Path) -> None:
    """--storage makes the call's writes durable: a second call sees them."""
    db = tmp_path / "counter.db"
    assert cli("call", COUNTER, "add 2", "--storage", db)[0] == 0
    code, out, _ = cli("call", COUNTER, "add 3", "--storage", db)
    assert code == 0
    assert "reply      '5'" in out


def test_call_app_error_exits_3_with_the_message(tmp_path: Path) -> None:
    """An application error is not a crash: exit code 3 and its message, also as JSON."""
    code, out, err = cli("call", COUNTER, "add many", "--json")
    assert code == 3
    report = json.loads(out)
    assert report["outcome"] == "app-error"
    assert report["error"] == "add needs a whole number, got 'many'"
    assert err.strip() == "wasmactors: application error: add needs a whole number, got 'many'"


@pytest.mark.parametrize(
    ("flags", "kind"),
    [
        (["--fuel", "1000000"], "fuel-exhausted"),
        (["--fuel", "100000000000", "--timeout", "0.05"], "timeout"),
    ],
)
def test_call_crash_exits_4_with_the_kind_on_stderr(tmp_path: Path, flags: list[str], kind: str) -> None:
    """An infinite loop crashes under the flag-given fuel or deadline: exit 4, the kind on stderr."""
    code, out, err = cli("call", wat_file(tmp_path, "infinite_loop"), "x", "--json", *flags)
    assert code == 4
    report = json.loads(out)
    assert report["outcome"] == "crash"
    assert report["crash_kind"] == kind
    assert err.startswith(f"wasmactors: crashed: {kind}: ")
    assert len(err.strip().splitlines()) == 1
    if kind == "fuel-exhausted":
        assert report["fuel"] == report["fuel_limit"] == 1_000_000


def test_call_lists_messages_the_handler_queued() -> None:
    """`call` runs one actor: what the guest sent is shown as queued, with the audit entry."""
    code, out, err = cli("call", python_guest("kitchen"), "send probe hi")
    assert code == 0, err
    assert "messaging.send('probe', 2 B) -> ok" in out
    assert "queued     1 (not delivered: `call` runs one actor)" in out
    assert "send -> probe: 'hi'" in out


def test_call_reports_a_requested_stop() -> None:
    """`call` shows that the guest called `lifecycle.stop`, in the text and the JSON."""
    code, out, err = cli("call", python_guest("kitchen"), "set-then-stop k v")
    assert code == 0, err
    assert "lifecycle.stop()" in out
    assert "stop       requested (lifecycle.stop)" in out
    code, out, err = cli("call", python_guest("kitchen"), "set-then-stop k v", "--json")
    assert code == 0, err
    assert json.loads(out)["stop"] is True


def test_call_rejects_a_payload_over_the_limit_in_one_line(tmp_path: Path) -> None:
    """A payload above the manifest's max-payload is refused before the guest runs."""
    code, _, err = cli("call", COUNTER, "x" * (1024 * 1024 + 1))
    assert code == 1
    assert err.startswith("wasmactors: error: payload of 1048577 bytes exceeds the limit")


# -- inspect ---------------------------------------------------------------------


def test_inspect_describes_a_guest_in_wit_terms() -> None:
    """inspect lists the actor imports and handler exports with WIT signatures and says it fits."""
    code, out, _ = cli("inspect", python_guest("echo"))
    assert code == 0
    assert "wasmactors:actor/storage@0.1.0  instance { get, set, delete, keys }" in out
    assert "wasmactors:actor/handler@0.1.0#handle-message  func(msg: record { sender: option<string>" in out
    assert "interfaces from WASI p2" in out
    assert out.rstrip().endswith("fits the `actor` world: yes")


def test_inspect_says_what_is_missing_from_the_world(tmp_path: Path) -> None:
    """A component with an import the host lacks does not fit: exit 3 and the import named."""
    text = wat_guest("echo").replace(
        b"(component\n", b'(component\n  (import "acme:db/query@1.0.0" (instance (export "run" (func))))\n', 1
    )
    code, out, _ = cli("inspect", wat_file(tmp_path, "extra", text), "--json")
    assert code == 3
    info = json.loads(out)
    assert info["fits"] is False
    assert info["problems"] == ["imports `acme:db/query@1.0.0`, which the host does not provide"]
    assert info["imports"]["acme:db/query@1.0.0"] == "instance { run }"


def test_inspect_explains_a_core_module_in_one_line(tmp_path: Path) -> None:
    """A core module is not a component: exit 1 and how to componentize it, on one line."""
    code, out, err = cli("inspect", wat_file(tmp_path, "core", b"(module (func))"))
    assert (code, out) == (1, "")
    assert err.startswith("wasmactors: error: ")
    assert "componentize-py" in err
    assert len(err.strip().splitlines()) == 1


def test_a_missing_file_is_one_line_and_verbose_adds_the_traceback(tmp_path: Path) -> None:
    """Errors are one line; --verbose adds the traceback above it."""
    code, _, err = cli("inspect", tmp_path / "nope.wasm")
    assert code == 1
    assert err == f"wasmactors: error: {tmp_path / 'nope.wasm'}: cannot read: No such file or directory\n"
    code, _, err = cli("--verbose", "inspect", tmp_path / "nope.wasm")
    assert code == 1
    assert "Traceback (most recent call last)" in err


# -- run -------------------------------------------------------------------------


def test_run_reports_a_malformed_topology_by_file_and_key(tmp_path: Path) -> None:
    """A topology with a wrong type fails before anything starts, naming the key."""
    bad = tmp_path / "topology.toml"
    bad.write_text('[[child]]\ntype = "actor"\nname = "a"\ncomponent = "x.wasm"\nmailbox-size = "big"\n')
    code, out, err = cli("run", bad)
    assert (code, out) == (1, "")
    assert err == f"wasmactors: error: {bad}: key `child[0].mailbox-size`: Expected `int | null`, got `str`\n"


def test_run_on_trio_prints_the_stats_table(tmp_path: Path) -> None:
    """`run --trio` starts the tree, sends the messages, stops when idle and prints per-actor stats."""
    topology = tmp_path / "topology.toml"
    topology.write_text(
        f'[[child]]\ntype = "actor"\nname = "counter"\ncomponent = "{COUNTER}"\n'
        '[[message]]\nto = "counter"\npayload = "add 4"\n'
        '[[message]]\nto = "counter"\npayload = "add x"\n'
    )
    code, out, err = cli("run", topology, "--trio", "--idle", "0.1")
    assert code == 0, err
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("counter")}
    assert rows["counter"][1:5] == ["2", "1", "0", "0"]  # handled, app errors, crashes, restarts
    assert "ended: idle" in out
    assert (tmp_path / "topology.db").exists()  # the default storage sits beside the topology


def test_run_for_a_duration_ends_by_time(tmp_path: Path) -> None:
    """--for stops the run after that many seconds whatever the actors do."""
    topology = tmp_path / "t.toml"
    topology.write_text(f'[[child]]\ntype = "actor"\nname = "c"\ncomponent = "{COUNTER}"\n')
    code, out, _ = cli("run", topology, "--for", "0.2", "--storage", ":memory:")
    assert code == 0
    assert "ended: time" in out
    assert not (tmp_path / "t.db").exists()


# -- build -----------------------------------------------------------------------


def test_build_componentizes_a_guest_and_skips_it_when_fresh(tmp_path: Path) -> None:
    """build makes a component that fits the world; --if-stale then does nothing."""
    guest = tmp_path / "greeter"
    guest.mkdir()
    shutil.copy(ROOT / "examples" / "echo" / "app.py", guest / "app.py")
    code, out, err = cli("build", guest, "--wit", ROOT / "wit")
    assert code == 0, err
    assert "building greeter" in err
    assert f"built {guest / 'build' / 'greeter.wasm'}" in out
    assert "fits the `actor` world" in out
    code, _, err = cli("build", guest, "--wit", ROOT / "wit", "--if-stale")
    assert code == 0
    assert err.strip().endswith("is up to date")


def test_build_failure_is_one_line_from_componentize_py(tmp_path: Path) -> None:
    """A guest that does not import fails the build with componentize-py's last line, old output kept."""
    guest = tmp_path / "broken"
    guest.mkdir()
    (guest / "app.py").write_text("import no_such_module\n")
    code, out, err = cli("build", guest / "app.py", "--wit", ROOT / "wit")
    assert (code, out) == (1, "")
    lines = err.strip().splitlines()
    assert lines[-2].startswith("wasmactors: error: building app failed: ")
    assert lines[-1] == "  (run with --verbose for componentize-py's output)"
    assert not (guest / "build" / "app.wasm").exists()


def test_build_refuses_a_manifest_without_a_build_table(tmp_path: Path) -> None:
    """Only a manifest with [build] names sources; the error says what to add."""
    manifest = tmp_path / "component.toml"
    manifest.write_text('component = "x.wasm"\n[limits]\nmemory = "1 MiB"\nfuel = 1\ntimeout-ms = 1\n')
    code, _, err = cli("build", manifest)
    assert code == 1
    assert "no [build] table" in err


def test_python_dash_m_wasmactors_runs_the_command_line() -> None:
    """The module entry point and the usage exit code (2) work."""
    ok = subprocess.run(
        [sys.executable, "-m", "wasmactors", "--help"], capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0
    assert "inspect" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "wasmactors", "fly"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2


def test_run_shuts_down_gracefully_on_sigterm(tmp_path: Path) -> None:
    """SIGTERM ends a run like Ctrl-C: actors stop, the table prints, exit code 0."""
    topology = tmp_path / "t.toml"
    topology.write_text(
        f'[[child]]\ntype = "actor"\nname = "c"\ncomponent = "{COUNTER}"\n'
        '[[message]]\nto = "c"\npayload = "add 1"\n'
    )
    env = {**os.environ, "WASMACTORS_CACHE_DIR": str(CACHE)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "wasmactors", "run", str(topology), "--idle", "600", "--storage", ":memory:"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:  # wait until the tree is up and the message sent
        if line.startswith("started 1 actors"):
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "ended: signal (SIGTERM)" in out
    assert out.splitlines()[2].split()[:2] == ["c", "1"]  # the message was handled before the stop


# -- a newcomer's first hour ---------------------------------------------------------


def test_version_and_verbose_before_or_after_the_command(tmp_path: Path) -> None:
    """--version prints the installed version; -v works on either side of the command."""
    with pytest.raises(SystemExit) as exit_:
        main(["--version"], out=io.StringIO(), err=io.StringIO())
    assert exit_.value.code == 0
    missing = str(tmp_path / "nope.wasm")
    for argv in (["-v", "inspect", missing], ["inspect", missing, "--verbose"]):
        code, _, err = cli(*argv)
        assert code == 1
        assert "Traceback (most recent call last)" in err


def test_version_names_the_distribution() -> None:
    """`wasmactors --version` is the package's version from its metadata."""
    done = subprocess.run(
        [sys.executable, "-m", "wasmactors", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"wasmactors {importlib.metadata.version('wasmactors')}"


def test_a_closed_stdout_ends_quietly(tmp_path: Path) -> None:
    """Output piped into a reader that has gone (`| head`) ends with no error message."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written
    try:
        done = subprocess.run(
            [sys.executable, "-m", "wasmactors", "inspect", str(python_guest("echo"))],
            stdout=write, stderr=subprocess.PIPE, text=True, check=False,
            env={**os.environ, "WASMACTORS_CACHE_DIR": str(CACHE)},
        )  # fmt: skip
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")


def test_inspect_folds_the_toolchains_exports() -> None:
    """componentize-py's own exports are one folded line; --all lists them; no line is huge."""
    code, out, _ = cli("inspect", python_guest("echo"))
    assert code == 0
    assert "exports#init" not in [line.split()[0] for line in out.splitlines() if line.strip()]
    assert "(+ 1 exports of the guest's toolchain, not the world: exports#init; --all lists them)" in out
    assert max(len(line) for line in out.splitlines()) < 250
    code, out, _ = cli("inspect", python_guest("echo"), "--all")
    assert "  exports#init  " in out


def test_call_as_an_address_sees_the_state_a_run_left(tmp_path: Path) -> None:
    """`call --storage FILE --as ADDRESS` runs one message against an actor's stored state."""
    topology = tmp_path / "t.toml"
    topology.write_text(
        f'[[child]]\ntype = "actor"\nname = "c"\ncomponent = "{COUNTER}"\n'
        '[[message]]\nto = "c"\npayload = "add 7"\n'
    )
    assert cli("run", topology, "--idle", "0.1")[0] == 0
    code, out, err = cli("call", COUNTER, "get", "--storage", tmp_path / "t.db", "--as", "c")
    assert code == 0, err
    assert "reply      '7'" in out


def test_run_and_call_need_no_wit_for_fresh_guests_and_take_wit(tmp_path: Path) -> None:
    """A fresh [build] guest outside any project runs without a WIT; --wit names one to track."""
    guest = tmp_path / "counter"
    shutil.copytree(ROOT / "examples" / "counter", guest, ignore=shutil.ignore_patterns("__pycache__"))
    built = guest / "build" / "counter.wasm"
    os.utime(built)  # newer than its sources
    code, _, err = cli("call", guest / "component.toml", "add 2")
    assert code == 0, err
    assert "built" not in err
    wit = tmp_path / "wit"
    shutil.copytree(ROOT / "wit", wit)
    os.utime(built, (1, 1))  # now older than that WIT: stale, but the build fails on purpose
    code, _, err = cli("call", guest / "component.toml", "add 2", "--wit", tmp_path / "no-wit")
    assert code == 1
    assert "building counter failed" in err


def test_build_shows_the_python_error_whatever_rust_backtrace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An inherited RUST_BACKTRACE=1 does not turn a guest's syntax error into a Rust backtrace."""
    monkeypatch.setenv("RUST_BACKTRACE", "1")
    (tmp_path / "app.py").write_text("def broken(:\n")
    code, _, err = cli("build", tmp_path / "app.py", "--wit", ROOT / "wit")
    assert code == 1
    assert "wasmactors: error: building app failed: SyntaxError: invalid syntax (app.py, line 1)" in err


def test_build_sees_only_the_guests_folder_not_an_inherited_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package in $VIRTUAL_ENV's or $PYTHONPATH's site-packages is not bundled into a guest."""
    site = tmp_path / "venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    (site / "site-packages" / "leaked").mkdir(parents=True)
    (site / "site-packages" / "leaked" / "__init__.py").write_text("VALUE = 1\n")
    monkeypatch.setenv("VIRTUAL_ENV", str(tmp_path / "venv"))
    monkeypatch.setenv("PYTHONPATH", str(site / "site-packages"))
    guest = tmp_path / "guest"
    guest.mkdir()
    (guest / "app.py").write_text("import leaked\n")
    code, _, err = cli("build", guest / "app.py", "--wit", ROOT / "wit")
    assert code == 1
    assert "ModuleNotFoundError: No module named 'leaked'" in err


def test_cache_lists_prunes_and_bounds_the_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache keeps the most recently used artifacts under WASMACTORS_CACHE_MAX; `cache` lists
    them with their size and bound, --prune SIZE and --clear evict the least recently used."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("WASMACTORS_CACHE_DIR", str(cache))
    names = ["echo", "app_error", "crash_on_x"]
    with Engine(cache_dir=cache) as engine:
        for name in names:
            engine.load(wat_guest(name), name=f"{name}.wat")
    sizes = {e.name: e.size for e in cache_entries(cache)}
    assert set(sizes) == {f"{n}.wat" for n in names}
    code, out, _ = cli("cache")
    assert code == 0
    assert f"cache      {cache}" in out
    assert "artifacts  3, " in out
    assert all(f"  {n}.wat" in out for n in names)
    # A bound that holds two: the least recently used (the first) is evicted on the next store.
    monkeypatch.setenv("WASMACTORS_CACHE_MAX", str(sizes["app_error.wat"] + sizes["crash_on_x.wat"] + 1))
    with Engine(cache_dir=cache) as engine:
        engine.load(wat_guest("crash_on_x"), name="crash_on_x.wat")  # used: now the most recent
        engine.load(wat_guest("unreachable"), name="unreachable.wat")  # stored: over the bound
    kept = [e.name for e in cache_entries(cache)]
    assert kept[0] == "unreachable.wat"
    assert "echo.wat" not in kept
    code, out, _ = cli("cache", "--clear")
    assert code == 0
    assert "artifacts  0, 0.0 MiB" in out


def test_a_first_compile_says_so_before_it_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """wasmtime's first compile of a big component is announced (a log line) before the wait."""
    from wasmactors.runtime import _component

    monkeypatch.setattr(_component, "ANNOUNCE_COMPILE", 0)  # a WAT guest compiles fast; pretend it is big
    monkeypatch.setenv("WASMACTORS_CACHE_DIR", str(tmp_path / "cache"))
    path = wat_file(tmp_path, "echo")
    code, _, err = cli("call", path, "hi")
    assert code == 0
    assert err.startswith(
        "   info [wasmactors.runtime] compiling echo.wat (0.0 MiB) with wasmtime: the first load"
    )
    code, _, err = cli("call", path, "hi")  # from the cache: nothing to announce
    assert (code, err) == (0, "")
