"""The development sshd (``scripts/sshd-dev.sh up``) behaves as the remote-SSH tests assume.

These pin the facts the remote executor will build on (docs/design/remote-ssh.md): commands
run as the unprivileged ``capi-remote``, only the test key gets in and nothing prompts, the
sshd log tells connections from sessions, ProxyJump works, and the remote shell re-parses
argv. Skipped when the dev sshd is not up, except with ``CLUSTER_API_REQUIRE_SSHD=1`` (CI),
where that is a failure.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "sshd-dev.sh"
REMOTE_USER = "capi-remote"
# Every ssh call is bounded: a test that would hang (a prompt, a dead server) fails instead.
SSH_TIMEOUT = 30.0


@dataclass(frozen=True)
class DevSshd:
    state_dir: Path
    port: int

    @property
    def client_config(self) -> Path:
        return self.state_dir / "client" / "ssh_config"

    @property
    def client_key(self) -> Path:
        return self.state_dir / "client" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "client" / "known_hosts"

    @property
    def log(self) -> Path:
        return self.state_dir / "sshd.log"

    def ssh(
        self, *args: str, config: Path | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ssh", "-F", str(config or self.client_config), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SSH_TIMEOUT,
            check=check,
        )

    def log_since(self, offset: int) -> str:
        with self.log.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", errors="replace")

    def config_with(self, tmp_path: Path, option: str, value: str) -> Path:
        """A copy of the client config with one option's value replaced: ``-o IdentityFile=``
        adds to the config's identities instead of replacing them."""
        text = self.client_config.read_text()
        pattern = rf"^(\s*{option}) .*$"
        assert re.search(pattern, text, flags=re.M), f"{option} not in {self.client_config}"
        path = tmp_path / f"ssh_config.{option}"
        path.write_text(re.sub(pattern, rf"\1 {value}", text, flags=re.M))
        return path


def sshd_dev_problem(state_dir: Path) -> str | None:
    """None when the dev sshd lets the test key in, else why not."""
    config = state_dir / "client" / "ssh_config"
    if shutil.which("ssh") is None:
        return "the ssh client is not installed (run scripts/sshd-dev.sh up)"
    if not config.is_file():
        return f"{config} does not exist (run scripts/sshd-dev.sh up)"
    try:
        out = subprocess.run(
            ["ssh", "-F", str(config), "capi-dev", "id", "-un"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SSH_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"ssh capi-dev failed: {exc}"
    if out.stdout.strip() != REMOTE_USER:
        return f"ssh capi-dev exited {out.returncode}: {out.stderr.strip()[:300]}"
    return None


@pytest.fixture(scope="module")
def dev() -> DevSshd:
    state_dir = Path(os.environ.get("SSHD_DEV_STATE_DIR", "/run/sshd-dev"))
    reason = sshd_dev_problem(state_dir)
    if reason is not None:
        if os.environ.get("CLUSTER_API_REQUIRE_SSHD") == "1":
            pytest.fail(f"the dev sshd is required here (CLUSTER_API_REQUIRE_SSHD=1): {reason}")
        pytest.skip(reason)
    config = (state_dir / "client" / "ssh_config").read_text()
    port = re.search(r"^\s*Port (\d+)$", config, flags=re.M)
    assert port, "no Port in the client config"
    return DevSshd(state_dir, int(port.group(1)))


@pytest.fixture
def control_dir() -> Iterator[Path]:
    """A private directory for ControlPath sockets, short enough for the 108-byte limit
    (pytest's tmp_path plus a 40-character %C hash is not)."""
    path = Path(tempfile.mkdtemp(prefix="capi-mux-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def new_key(path: Path) -> Path:
    """A fresh ed25519 key pair that the dev sshd has never seen."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        timeout=SSH_TIMEOUT,
    )
    return path


def client_port(ssh_connection: str) -> int:
    """The client's source port from the remote ``$SSH_CONNECTION``: it names the
    connection in the sshd log."""
    return int(ssh_connection.split()[1])


def test_status_reports_a_working_login(dev: DevSshd) -> None:
    out = subprocess.run(
        ["bash", str(SCRIPT), "status"], capture_output=True, text=True, timeout=SSH_TIMEOUT
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"login as {REMOTE_USER} works" in out.stdout


def test_commands_run_as_the_unprivileged_remote_user(dev: DevSshd) -> None:
    out = dev.ssh("capi-dev", "id -un; id -u; echo $HOME; test -d $HOME && echo home", check=True)
    name, uid, home, exists = out.stdout.split()
    assert name == REMOTE_USER
    assert int(uid) != 0
    assert (home, exists) == (f"/home/{REMOTE_USER}", "home")


def test_server_listens_on_loopback_only(dev: DevSshd) -> None:
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port = local.rsplit(":", 1)
            if state == "0A" and int(port, 16) == dev.port:  # 0A: LISTEN
                listening.append(address)
    # /proc/net/tcp writes 127.0.0.1 as little-endian hex.
    assert listening == ["0100007F"]


def test_a_wrong_key_is_refused_at_once_without_a_prompt(dev: DevSshd, tmp_path: Path) -> None:
    wrong_key = new_key(tmp_path / "wrong_key")
    config = dev.config_with(tmp_path, "IdentityFile", str(wrong_key))
    out = dev.ssh("capi-dev", "true", config=config)
    assert out.returncode == 255
    assert f"{REMOTE_USER}@127.0.0.1: Permission denied (publickey)." in out.stderr


def test_root_and_password_logins_are_refused(dev: DevSshd) -> None:
    root = dev.ssh("-o", "User=root", "capi-dev", "true")
    assert (root.returncode, "root@127.0.0.1: Permission denied (publickey).") == (
        255,
        root.stderr.strip(),
    )
    password = dev.ssh("-o", "PreferredAuthentications=password", "capi-dev", "true")
    assert password.returncode == 255
    assert "Permission denied (publickey)." in password.stderr


def test_unknown_and_changed_host_keys_are_refused_in_batch_mode(
    dev: DevSshd, tmp_path: Path
) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    unknown = dev.ssh("-o", f"UserKnownHostsFile={empty}", "capi-dev", "true")
    assert unknown.returncode == 255
    assert "Host key verification failed." in unknown.stderr

    kind, key = new_key(tmp_path / "other_host_key").with_suffix(".pub").read_text().split()[:2]
    changed_file = tmp_path / "changed_known_hosts"
    changed_file.write_text(f"[127.0.0.1]:{dev.port} {kind} {key}\n")
    changed = dev.ssh("-o", f"UserKnownHostsFile={changed_file}", "capi-dev", "true")
    assert changed.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in changed.stderr


def test_the_log_tells_one_connection_from_its_many_multiplexed_sessions(
    dev: DevSshd, control_dir: Path
) -> None:
    mux = ["-o", f"ControlPath={control_dir}/%C"]
    offset = dev.log.stat().st_size
    dev.ssh(
        *mux,
        "-o",
        "ControlMaster=yes",
        "-o",
        "ControlPersist=60",
        "-N",
        "-f",
        "capi-dev",
        check=True,
    )
    try:
        check = dev.ssh(*mux, "-O", "check", "capi-dev")
        assert check.returncode == 0
        assert re.fullmatch(r"Master running \(pid=\d+\)", check.stderr.strip())
        ports = {
            client_port(
                dev.ssh(
                    *mux, "-o", "ControlMaster=no", "capi-dev", "echo $SSH_CONNECTION", check=True
                ).stdout
            )
            for _ in range(5)
        }
    finally:
        dev.ssh(*mux, "-O", "exit", "capi-dev")
    assert len(ports) == 1
    (port,) = ports
    log = dev.log_since(offset)
    assert log.count(f"Accepted publickey for {REMOTE_USER} from 127.0.0.1 port {port} ") == 1
    assert (
        log.count(f"Starting session: command for {REMOTE_USER} from 127.0.0.1 port {port} ") == 5
    )

    # Without multiplexing, every command is a connection of its own.
    offset = dev.log.stat().st_size
    direct = {
        client_port(dev.ssh("capi-dev", "echo $SSH_CONNECTION", check=True).stdout)
        for _ in range(3)
    }
    log = dev.log_since(offset)
    assert len(direct) == 3
    for port in direct:
        assert log.count(f"Accepted publickey for {REMOTE_USER} from 127.0.0.1 port {port} ") == 1


def test_a_killed_master_fails_the_command_in_flight_and_the_next_one_reconnects(
    dev: DevSshd, control_dir: Path
) -> None:
    mux = [
        "-o",
        f"ControlPath={control_dir}/%C",
        "-o",
        "ControlMaster=auto",
        "-o",
        "ControlPersist=60",
    ]
    dev.ssh(*mux, "capi-dev", "true", check=True)
    check = dev.ssh(*mux, "-O", "check", "capi-dev")
    master = re.search(r"pid=(\d+)", check.stderr)
    assert master, check.stderr
    in_flight = subprocess.Popen(
        ["ssh", "-F", str(dev.client_config), *mux, "capi-dev", "echo started; exec sleep 60"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert in_flight.stdout is not None
        assert in_flight.stdout.readline() == "started\n"
        os.kill(int(master.group(1)), 9)
        _, err = in_flight.communicate(timeout=SSH_TIMEOUT)
    finally:
        in_flight.kill()
        in_flight.wait()
    # ssh's own failure code, and in mux mode not a word on stderr: the cause must be
    # worked out by the caller (and the remote command may still be running).
    assert (in_flight.returncode, err) == (255, "")
    # The stale socket is unlinked and a new master made by the next command.
    again = dev.ssh(*mux, "capi-dev", "id -un")
    try:
        assert (again.returncode, again.stdout) == (0, f"{REMOTE_USER}\n")
    finally:
        dev.ssh(*mux, "-O", "exit", "capi-dev")


def test_proxyjump_alias_reaches_the_same_server_through_a_jump(dev: DevSshd) -> None:
    offset = dev.log.stat().st_size
    out = dev.ssh("capi-dev-jump", "id -un; echo $SSH_CONNECTION", check=True)
    name, connection = out.stdout.split("\n", 1)
    assert name == REMOTE_USER
    port = client_port(connection)
    log = dev.log_since(offset)
    # The target connection, carried inside the jump connection: two logins in all.
    assert f"Accepted publickey for {REMOTE_USER} from 127.0.0.1 port {port} " in log
    assert log.count(f"Accepted publickey for {REMOTE_USER} from 127.0.0.1 port ") >= 2


def test_ssh_joins_argv_for_the_remote_shell_so_each_word_must_be_quoted(dev: DevSshd) -> None:
    marker = f"/tmp/capi-sshd-dev-{uuid.uuid4().hex}"
    argv = ["printf", "%s\\n", f"job name; touch {marker}", "$HOME", "*"]
    try:
        naive = dev.ssh("capi-dev", *argv)
        assert naive.returncode == 0
        assert Path(marker).exists(), "the remote shell ran the text after ';'"
    finally:
        Path(marker).unlink(missing_ok=True)
    quoted = dev.ssh("capi-dev", shlex.join(argv), check=True)
    assert quoted.stdout.splitlines() == argv[2:]
    assert not Path(marker).exists()
