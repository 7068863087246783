"""The SSH command runner (cluster_api.remote): argv and ControlPath building as plain
data, then the real thing against the dev sshd (``scripts/sshd-dev.sh up``).

The integration tests are skipped when the dev sshd is not up, and fail instead with
``CLUSTER_API_REQUIRE_SSHD=1``, as in test_sshd_dev.py (whose fixture they use). They count
connections in the sshd log by the client port the remote side sees, so other users of the
shared sshd do not disturb the counts.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import socket
import stat
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from test_sshd_dev import REMOTE_USER, DevSshd, client_port, new_key
from test_sshd_dev import dev as _dev_fixture  # noqa: F401 (the dev sshd fixture)

from cluster_api.errors import ClusterAPIError, CommandFailedError, CommandTimeoutError
from cluster_api.remote import (
    MAX_SESSIONS,
    RemoteFileExistsError,
    SSHError,
    SSHFailure,
    SSHRunner,
    SSHTarget,
    classify_ssh_failure,
    control_directory,
    control_path,
    remote_command_line,
)

HOSTILE = [
    "two words",
    "it's",
    'say "hi"',
    "$(touch {marker})",
    "`touch {marker}`",
    "; touch {marker}",
    "line\nbreak",
    "ünïcødé ✓",
    "$HOME",
    "*",
    "",
    "-n",
]


def hostile(marker: Path) -> list[str]:
    return [value.format(marker=marker) for value in HOSTILE]


# ---------------------------------------------------------------- plain data, no ssh


def test_a_config_with_every_ssh_key_gives_a_target(tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    key.write_text("not really a key")
    target = SSHTarget.from_config(
        {
            "ssh": "alice@login1.example.org",
            "ssh_port": 2200,
            "ssh_identity": str(key),
            "ssh_options": ["ServerAliveInterval=30", "ProxyJump bastion"],
        }
    )
    assert target == SSHTarget(
        "alice@login1.example.org", 2200, str(key), ["ServerAliveInterval=30", "ProxyJump bastion"]
    )
    assert target.destination == "alice@login1.example.org:2200"
    assert SSHTarget.from_config({"ssh": "capi-dev"}) == SSHTarget("capi-dev")
    assert SSHTarget.from_config({}) is None


def test_the_identity_is_expanded_from_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "key").write_text("k")
    target = SSHTarget.from_config({"ssh": "h", "ssh_identity": "~/key"})
    assert target is not None
    assert target.identity == str(tmp_path / "key")


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"ssh": ""}, "ssh"),
        ({"ssh": 42}, "ssh"),
        ({"ssh": "two words"}, "ssh"),
        ({"ssh": "-oProxyCommand=touch /tmp/x"}, "ssh"),
        ({"ssh": "alice@-oProxyCommand=x"}, "ssh"),
        ({"ssh": "alice@"}, "ssh"),
        ({"ssh": "@host"}, "ssh"),
        ({"ssh": "host\nProxyCommand x"}, "ssh"),
        ({"ssh": "h", "ssh_port": 0}, "ssh_port"),
        ({"ssh": "h", "ssh_port": 70000}, "ssh_port"),
        ({"ssh": "h", "ssh_port": True}, "ssh_port"),
        ({"ssh": "h", "ssh_port": "22"}, "ssh_port"),
        ({"ssh": "h", "ssh_identity": ""}, "ssh_identity"),
        ({"ssh": "h", "ssh_options": "ServerAliveInterval=30"}, "ssh_options"),
        ({"ssh": "h", "ssh_options": ["ServerAliveInterval"]}, "ssh_options"),
        ({"ssh": "h", "ssh_options": ["-v"]}, "ssh_options"),
        ({"ssh": "h", "ssh_options": ["User=a\nProxyCommand=x"]}, "ssh_options"),
        ({"ssh": "h", "ssh_options": [3]}, "ssh_options"),
        ({"ssh_port": 22}, "ssh_port"),
    ],
)
def test_a_bad_config_value_is_refused_naming_its_key(values: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError, match=rf"^{key}:"):
        SSHTarget.from_config(values)


def test_the_remote_command_line_is_one_word_the_shell_splits_back_into_argv() -> None:
    argv = ["printf", "%s\\n", *hostile(Path("/tmp/never"))]
    assert shlex.split(remote_command_line(argv)) == argv
    line = remote_command_line(["sh", "-c", 'echo "$V"'], {"V": "a b; $(id) `id` 'q\""})
    assert shlex.split(line) == ["env", "V=a b; $(id) `id` 'q\"", "sh", "-c", 'echo "$V"']


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        ([], None),
        ("echo hi", None),
        (["echo", "nul\x00byte"], None),
        (["true"], {"BAD NAME": "x"}),
        (["true"], {"A=B": "x"}),
    ],
)
def test_what_cannot_be_sent_literally_is_refused(
    argv: list[str], env: dict[str, str] | None
) -> None:
    with pytest.raises(ValueError):
        remote_command_line(argv, env)


def test_commands_join_the_master_only_and_carry_one_quoted_word() -> None:
    target = SSHTarget("alice@login1", 2200, "/keys/id", ["ProxyJump=bastion", "User=bob"])
    runner = SSHRunner(target)
    argv = runner.command_argv(["bsub", "-J", "a b;c"], {"K": "v w"}, timeout=30)
    host = argv.index("alice@login1")
    assert argv[host - 1] == "--"
    assert argv[host + 1 :] == [remote_command_line(["bsub", "-J", "a b;c"], {"K": "v w"})]
    options = [argv[i + 1] for i, word in enumerate(argv[:host]) if word == "-o"]
    assert {"BatchMode=yes", "ControlMaster=no", "ProxyCommand=false"} <= set(options)
    assert f"ControlPath={runner.control_path}" in options
    # ssh takes the first value of an option: ours come before the user's.
    assert options.index("ProxyCommand=false") < options.index("ProxyJump=bastion")
    assert options.index(f"ControlPath={runner.control_path}") < options.index("User=bob")
    assert argv[argv.index("-p") + 1] == "2200"
    assert argv[argv.index("-i") + 1] == "/keys/id"
    assert not {"-v", "-t", "-tt", "-F"} & set(argv)
    master = runner.master_argv(timeout=30)
    assert {"-N", "-f"} <= set(master)
    assert "ControlMaster=yes" in master
    assert "ProxyCommand=false" not in master


def test_the_connect_timeout_never_exceeds_the_command_timeout() -> None:
    runner = SSHRunner(SSHTarget("h"))
    assert "ConnectTimeout=2" in runner.command_argv(["true"], None, timeout=1.5)
    assert "ConnectTimeout=10" in runner.command_argv(["true"], None, timeout=600)
    assert "ConnectTimeout=1" in runner.command_argv(["true"], None, timeout=0.01)


def test_each_user_port_identity_and_option_gets_its_own_short_control_path() -> None:
    directory = control_directory()
    targets = [
        SSHTarget("login1"),
        SSHTarget("alice@login1"),
        SSHTarget("login1", port=2222),
        SSHTarget("login1", identity="/keys/a"),
        SSHTarget("login1", identity="/keys/b"),
        SSHTarget("login1", options=["ProxyJump=bastion"]),
    ]
    paths = {control_path(target, directory) for target in targets}
    assert len(paths) == len(targets)
    assert control_path(SSHTarget("login1", identity="/keys/a"), directory) == control_path(
        SSHTarget("login1", identity="/keys/a"), directory
    )
    # ssh binds the socket under a 17-character temporary suffix first; sun_path is 104
    # bytes on macOS, 108 on Linux.
    assert all(len(str(path)) + 17 < 104 for path in paths)
    assert {path.parent for path in paths} == {directory}


def test_the_control_directory_is_private() -> None:
    mode = control_directory().stat().st_mode
    assert stat.S_IMODE(mode) == 0o700
    assert control_directory().stat().st_uid == os.getuid()


@pytest.mark.parametrize(
    ("stderr", "cause"),
    [
        ("capi-remote@127.0.0.1: Permission denied (publickey).", SSHFailure.KEY_REFUSED),
        (
            "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict "
            "checking.\nHost key verification failed.",
            SSHFailure.HOST_KEY_UNKNOWN,
        ),
        (
            "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
            "Host key verification failed.",
            SSHFailure.HOST_KEY_CHANGED,
        ),
        ("ssh: connect to host 127.0.0.1 port 2299: Connection refused", SSHFailure.UNREACHABLE),
        (
            "ssh: Could not resolve hostname x.invalid: Name or service not known",
            SSHFailure.UNREACHABLE,
        ),
        ("Connection timed out during banner exchange", SSHFailure.UNREACHABLE),
        ("", None),
        ("Job <12> is not found", None),
    ],
)
def test_openssh_messages_map_to_causes(stderr: str, cause: SSHFailure | None) -> None:
    assert classify_ssh_failure(stderr) == cause


def test_concurrency_is_bounded_below_the_servers_max_sessions() -> None:
    with pytest.raises(ValueError, match="max_concurrent"):
        SSHRunner(SSHTarget("h"), max_concurrent=MAX_SESSIONS + 1)
    with pytest.raises(ValueError, match="max_concurrent"):
        SSHRunner(SSHTarget("h"), max_concurrent=0)


def test_an_ssh_error_names_the_host_and_the_cause_and_is_a_command_failure() -> None:
    error = SSHError("alice@login1:22", SSHFailure.KEY_REFUSED, "Permission denied (publickey).")
    assert isinstance(error, CommandFailedError)
    assert isinstance(error, ClusterAPIError)
    assert str(error) == (
        "ssh alice@login1:22: key refused (Permission denied): Permission denied (publickey)."
    )


# ---------------------------------------------------------------- against the dev sshd

TIMEOUT = 30.0


@pytest.fixture(scope="module")
def sshd(request: pytest.FixtureRequest) -> DevSshd:
    """test_sshd_dev's fixture: skips (or fails, in CI) when the dev sshd is not up."""
    found: DevSshd = request.getfixturevalue("_dev_fixture")
    return found


# A refusal must come long before the command timeout, with margin for a loaded machine.
FAST = 8.0


def dev_target(sshd: DevSshd, **overrides: object) -> SSHTarget:
    """The dev sshd named the way a user would in YAML: no ``-F``, only these keys."""
    client = sshd.state_dir / "client"
    values: dict[str, object] = {
        "ssh": f"{REMOTE_USER}@127.0.0.1",
        "ssh_port": sshd.port,
        "ssh_identity": str(client / "id_ed25519"),
        "ssh_options": [
            "IdentitiesOnly=yes",
            "IdentityAgent=none",
            f"UserKnownHostsFile={client / 'known_hosts'}",
            "GlobalKnownHostsFile=/sshd/null",
            "StrictHostKeyChecking=yes",
        ],
    }
    values.update(overrides)
    target = SSHTarget.from_config(values)
    assert target is not None
    return target


@pytest.fixture
async def runner(sshd: DevSshd) -> AsyncIterator[SSHRunner]:
    ssh = SSHRunner(dev_target(sshd))
    yield ssh
    await ssh.close()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder under /tmp that the remote user can write to (it is this machine)."""
    path = Path(f"/tmp/capi-remote-test-{uuid.uuid4().hex[:12]}")
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False, timeout=TIMEOUT)


async def connection_port(runner: SSHRunner) -> int:
    result = await runner.run(["sh", "-c", 'echo "$SSH_CONNECTION"'], timeout=TIMEOUT)
    return client_port(result.stdout)


def logins(sshd: DevSshd, offset: int, port: int) -> int:
    return sshd.log_since(offset).count(
        f"Accepted publickey for {REMOTE_USER} from 127.0.0.1 port {port} "
    )


def master_pid(runner: SSHRunner) -> int:
    check = subprocess.run(
        runner.control_argv("check"), capture_output=True, text=True, timeout=TIMEOUT
    )
    found = re.search(r"pid=(\d+)", check.stderr)
    assert found, check.stderr
    return int(found.group(1))


@pytest.mark.integration
async def test_commands_run_as_the_remote_user(runner: SSHRunner) -> None:
    result = await runner.run(["id", "-un"], timeout=TIMEOUT)
    assert (result.returncode, result.stdout) == (0, f"{REMOTE_USER}\n")


@pytest.mark.integration
async def test_hostile_argv_and_env_values_arrive_literally_and_nothing_runs(
    runner: SSHRunner,
) -> None:
    marker = Path(f"/tmp/capi-remote-pwned-{uuid.uuid4().hex}")
    values = hostile(marker)
    script = 'printf "%s\\0" "$@"; printf "%s\\0" "$V1" "$V2"'
    env = {"V1": values[3], "V2": "\n".join(values)}
    result = await runner.run(["sh", "-c", script, "sh", *values], timeout=TIMEOUT, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\x00")[:-1] == [*values, env["V1"], env["V2"]]
    assert not marker.exists()


@pytest.mark.integration
async def test_a_hundred_commands_go_through_one_connection(
    sshd: DevSshd, runner: SSHRunner
) -> None:
    offset = sshd.log.stat().st_size
    port = await connection_port(runner)
    started = time.monotonic()
    for _ in range(100):
        assert (await runner.run(["true"], timeout=TIMEOUT)).returncode == 0
    elapsed = time.monotonic() - started
    assert {await connection_port(runner)} == {port}
    log = sshd.log_since(offset)
    assert logins(sshd, offset, port) == 1
    assert (
        log.count(f"Starting session: command for {REMOTE_USER} from 127.0.0.1 port {port} ") == 102
    )
    print(f"100 sequential commands over ssh: {elapsed:.2f}s, 1 connection")


@pytest.mark.integration
async def test_twenty_concurrent_first_commands_make_one_login(
    sshd: DevSshd, runner: SSHRunner
) -> None:
    offset = sshd.log.stat().st_size
    ports = await asyncio.gather(*(connection_port(runner) for _ in range(20)))
    assert len(set(ports)) == 1
    assert logins(sshd, offset, ports[0]) == 1


@pytest.mark.integration
async def test_a_killed_master_fails_the_command_in_flight_and_the_next_one_reconnects(
    sshd: DevSshd, runner: SSHRunner, shared_dir: Path
) -> None:
    first = await connection_port(runner)
    started = shared_dir / "started"
    in_flight = asyncio.ensure_future(
        runner.run(
            [
                "sh",
                "-c",
                'mkdir -p "$1" && touch "$1/started" && exec sleep 30',
                "sh",
                str(shared_dir),
            ],
            timeout=TIMEOUT,
        )
    )
    deadline = time.monotonic() + TIMEOUT
    while not started.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    os.kill(master_pid(runner), signal.SIGKILL)
    with pytest.raises(SSHError) as lost:
        await in_flight
    assert lost.value.cause is SSHFailure.CONNECTION_LOST
    assert "127.0.0.1:" in str(lost.value)
    offset = sshd.log.stat().st_size
    second = await connection_port(runner)
    assert second != first
    assert logins(sshd, offset, second) == 1
    # Killed between commands this time: the stale socket is replaced, nothing fails.
    os.kill(master_pid(runner), signal.SIGKILL)
    assert (await runner.run(["id", "-un"], timeout=TIMEOUT)).stdout == f"{REMOTE_USER}\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def refusal_cases(sshd: DevSshd, tmp_path: Path) -> dict[SSHFailure, SSHTarget]:
    client = sshd.state_dir / "client"
    wrong_key = new_key(tmp_path / "wrong_key")
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    kind, key = new_key(tmp_path / "other_host").with_suffix(".pub").read_text().split()[:2]
    changed = tmp_path / "changed_known_hosts"
    changed.write_text(f"[127.0.0.1]:{sshd.port} {kind} {key}\n")
    options = dev_target(sshd).options
    known = f"UserKnownHostsFile={client / 'known_hosts'}"
    return {
        SSHFailure.KEY_REFUSED: dev_target(sshd, ssh_identity=str(wrong_key)),
        SSHFailure.HOST_KEY_UNKNOWN: dev_target(
            sshd, ssh_options=[o if o != known else f"UserKnownHostsFile={empty}" for o in options]
        ),
        SSHFailure.HOST_KEY_CHANGED: dev_target(
            sshd,
            ssh_options=[o if o != known else f"UserKnownHostsFile={changed}" for o in options],
        ),
        SSHFailure.UNREACHABLE: dev_target(sshd, ssh_port=free_port()),
    }


@pytest.mark.integration
async def test_a_refused_or_unreachable_host_gives_the_clear_error_fast(
    sshd: DevSshd, tmp_path: Path
) -> None:
    for cause, target in refusal_cases(sshd, tmp_path).items():
        ssh = SSHRunner(target)
        started = time.monotonic()
        with pytest.raises(SSHError) as refused:
            await ssh.run(["true"], timeout=TIMEOUT)
        assert time.monotonic() - started < FAST, cause
        assert refused.value.cause is cause
        assert str(refused.value).startswith(f"ssh {target.destination}: {cause.value}")
        await ssh.close()


@pytest.mark.integration
async def test_a_missing_remote_command_is_named(runner: SSHRunner) -> None:
    with pytest.raises(SSHError) as missing:
        await runner.run(["bsub-not-installed", "-V"], timeout=TIMEOUT)
    assert missing.value.cause is SSHFailure.COMMAND_NOT_FOUND
    assert "bsub-not-installed" in str(missing.value)
    assert "127.0.0.1" in str(missing.value)


@pytest.mark.integration
async def test_a_remote_command_exiting_255_is_its_own_answer(runner: SSHRunner) -> None:
    result = await runner.run(["sh", "-c", "echo out; exit 255"], timeout=TIMEOUT)
    assert (result.returncode, result.stdout) == (255, "out\n")


def local_processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in cmdline and cmdline.startswith(b"ssh\x00"):
                found.append(int(entry.name))
    return found


@pytest.mark.integration
async def test_a_timeout_kills_the_local_ssh_and_raises(runner: SSHRunner) -> None:
    await runner.run(["true"], timeout=TIMEOUT)  # the master, outside the time limit
    tag = uuid.uuid4().hex
    started = time.monotonic()
    with pytest.raises(CommandTimeoutError, match="timed out"):
        await runner.run(["sh", "-c", "exec sleep 30", tag], timeout=1.0)
    assert time.monotonic() - started < FAST
    assert local_processes_mentioning(tag) == []
    assert (await runner.run(["true"], timeout=TIMEOUT)).returncode == 0


@pytest.mark.integration
async def test_scripts_are_written_0700_and_never_overwritten(
    sshd: DevSshd, runner: SSHRunner, shared_dir: Path
) -> None:
    folder = shared_dir / "job's dir" / "$(touch x)"
    path = str(folder / "run it;.sh")
    await runner.write_script(path, "#!/bin/sh\necho ü\n", timeout=TIMEOUT)
    info = Path(path).stat()
    assert stat.S_IMODE(info.st_mode) == 0o700
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert info.st_uid != os.getuid()  # the remote user's, not ours
    assert (await runner.run([path], timeout=TIMEOUT)).stdout == "ü\n"
    with pytest.raises(RemoteFileExistsError, match="already exists"):
        await runner.write_script(path, "#!/bin/sh\necho replaced\n", timeout=TIMEOUT)
    assert Path(path).read_text() == "#!/bin/sh\necho ü\n"
    assert sorted(p.name for p in folder.iterdir()) == ["run it;.sh"]


@pytest.mark.integration
async def test_many_files_are_read_and_removed_with_one_command_each(
    sshd: DevSshd, runner: SSHRunner, shared_dir: Path
) -> None:
    paths = [str(shared_dir / f"job {i}'s.exit") for i in range(300)]
    for path in paths[:3]:
        await runner.write_script(path, f"{path[-9:]}\n", timeout=TIMEOUT)
    port = await connection_port(runner)
    offset = sshd.log.stat().st_size
    texts = await runner.read_files([*paths, str(shared_dir)], timeout=TIMEOUT)
    assert [texts[p] for p in paths[:3]] == [f"{p[-9:]}\n" for p in paths[:3]]
    assert set(texts.values()) - {f"{p[-9:]}\n" for p in paths[:3]} == {None}
    await runner.remove_files(paths, timeout=TIMEOUT)
    sessions = f"Starting session: command for {REMOTE_USER} from 127.0.0.1 port {port} "
    assert sshd.log_since(offset).count(sessions) == 2
    assert set((await runner.read_files(paths, timeout=TIMEOUT)).values()) == {None}


@pytest.mark.integration
async def test_close_stops_the_master_it_started(runner: SSHRunner) -> None:
    await runner.run(["true"], timeout=TIMEOUT)
    pid = master_pid(runner)
    await runner.close()
    deadline = time.monotonic() + TIMEOUT
    while running(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not running(pid)
    assert not runner.control_path.exists()


def running(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting for a parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.integration
async def test_a_local_file_is_streamed_to_the_remote_stdin(
    runner: SSHRunner, tmp_path: Path
) -> None:
    content = "".join(hostile(Path("/tmp/never"))) + "\x00\xff bytes\n"
    local = tmp_path / "input"
    local.write_bytes(content.encode("utf-8", errors="surrogateescape"))
    result = await runner.run(
        ["sh", "-c", "cat; echo done"], timeout=TIMEOUT, stdin_file=str(local)
    )
    assert result.stdout == content + "done\n"
    with pytest.raises(CommandFailedError, match="cannot read"):
        await runner.run(["cat"], timeout=TIMEOUT, stdin_file=str(tmp_path / "missing"))


@pytest.mark.integration
async def test_racing_first_commands_share_one_refused_login(sshd: DevSshd, tmp_path: Path) -> None:
    wrong_key = new_key(tmp_path / "wrong_key")
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(wrong_key)], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    ssh = SSHRunner(dev_target(sshd, ssh_identity=str(wrong_key)))
    offset = sshd.log.stat().st_size
    outcomes = await asyncio.gather(
        *(ssh.run(["true"], timeout=TIMEOUT) for _ in range(20)), return_exceptions=True
    )
    assert all(isinstance(o, SSHError) and o.cause is SSHFailure.KEY_REFUSED for o in outcomes), (
        outcomes
    )
    assert sshd.log_since(offset).count(f"Failed publickey for {REMOTE_USER} ") >= 1
    assert sshd.log_since(offset).count(fingerprint) == 1
    # The next command (the engine's retry, after its backoff) tries again.
    with pytest.raises(SSHError):
        await ssh.run(["true"], timeout=TIMEOUT)
    assert sshd.log_since(offset).count(fingerprint) == 2
