"""Where remote commands go: the config keys ``ssh``, ``ssh_port``, ``ssh_identity`` and
``ssh_options`` checked into an `SSHTarget`, and the private socket each target's one
connection lives at (`cluster_api.remote` runs the commands)."""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_OPTION = re.compile(r"[A-Za-z][A-Za-z0-9]*(=|\s+)\S.*")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def refuse_control_chars(key: str, value: str) -> None:
    if _CONTROL_CHARS.search(value):
        raise ValueError(f"{key}: control characters are not allowed: {value!r}")


def parse_host(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"ssh: expected a host, user@host or ssh config alias, got {value!r}")
    refuse_control_chars("ssh", value)
    user, _, host = value.rpartition("@")
    if any(c.isspace() for c in value) or not host or (value.count("@") and not user):
        raise ValueError(f"ssh: {value!r} is not a host name, user@host or alias")
    if value.startswith("-") or host.startswith("-"):
        raise ValueError(f"ssh: {value!r} must not start with '-' (it would be an ssh option)")
    return value


def parse_port(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise ValueError(f"ssh_port: expected a port number from 1 to 65535, got {value!r}")
    return value


def parse_identity(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ValueError(f"ssh_identity: expected the path of a private key, got {value!r}")
    refuse_control_chars("ssh_identity", str(value))
    # Not required to exist here: one config serves machines with and without the key, and
    # where it is needed and missing the login fails as "key refused", naming the host.
    return str(Path(value).expanduser().absolute())


def parse_options(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"ssh_options: expected a list of 'Option=value', got {value!r}")
    for option in value:
        if not isinstance(option, str) or not _OPTION.fullmatch(option):
            raise ValueError(f"ssh_options: {option!r} is not an OpenSSH 'Option=value'")
        refuse_control_chars("ssh_options", option)
    return list(value)


@dataclass(frozen=True)
class SSHTarget:
    """Where commands run: the config keys ``ssh``, ``ssh_port``, ``ssh_identity`` and
    ``ssh_options``. Anything unset is left to the user's ``~/.ssh/config``."""

    host: str
    port: int | None = None
    identity: str | None = None
    options: list[str] = field(default_factory=list)

    @classmethod
    def from_config(cls, values: Mapping[str, object]) -> SSHTarget | None:
        """The target the config names, or None when ``ssh`` is unset (commands run
        here). ``ValueError`` names the first bad key."""
        if values.get("ssh") is None:
            stray = [k for k in ("ssh_port", "ssh_identity", "ssh_options") if values.get(k)]
            if stray:
                raise ValueError(f"{stray[0]}: set without ssh (which host is it for?)")
            return None
        return cls(
            host=parse_host(values["ssh"]),
            port=parse_port(values.get("ssh_port")),
            identity=parse_identity(values.get("ssh_identity")),
            options=parse_options(values.get("ssh_options")),
        )

    @property
    def destination(self) -> str:
        """The target as error messages name it."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def connection_options(self) -> list[str]:
        """The ssh arguments for this target; `-i` adds a key to the config's, as ssh does."""
        port = ["-p", str(self.port)] if self.port is not None else []
        identity = ["-i", self.identity] if self.identity is not None else []
        return [*port, *identity, *(word for o in self.options for word in ("-o", o))]


_control_dir: Path | None = None


def control_directory() -> Path:
    """This process's private (0700) directory of master sockets: short, because a socket
    path of 104 bytes or more cannot be bound, and removed when the process exits."""
    global _control_dir
    if _control_dir is None or not _control_dir.is_dir():
        _control_dir = Path(tempfile.mkdtemp(prefix="capi-ssh-", dir="/tmp"))
        atexit.register(shutil.rmtree, _control_dir, ignore_errors=True)
    return _control_dir


def control_path(target: SSHTarget, directory: Path) -> Path:
    """The master socket for `target`: a hash of every field, so two targets differing in
    user, port, identity or options (a ProxyJump, say) never share a connection."""
    key = json.dumps([target.host, target.port, target.identity, target.options])
    return directory / hashlib.sha256(key.encode()).hexdigest()[:24]
