"""Rendering and writing job scripts.

A job script is the one artefact every executor shares, so its layout is fixed here:
shebang, scheduler directives, the library's preamble (environment, exit-code record),
prologue lines, the command, epilogue lines. Rendering is pure; writing is the only side
effect and happens once, with exclusive creation so no script is ever overwritten.
"""

from __future__ import annotations

import errno
import os
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .models import check_single_line, check_utf8

if TYPE_CHECKING:
    from .config import ClusterConfig

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
EXIT_FILE_VAR = "CLUSTER_API_EXIT_FILE"


def safe_job_name(name: str, prefix: str | None = None) -> str:
    """``"{prefix}-{name}"`` with every character outside ``[A-Za-z0-9_.-]`` made ``-``."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"job name must be a non-empty string, got {name!r}")
    full = f"{prefix}-{name}" if prefix else name
    return _NAME_UNSAFE.sub("-", full)


def validate_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """Check variable names and values before they reach a script."""
    checked: dict[str, str] = {}
    for key, value in (env or {}).items():
        if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
            raise ValueError(
                f"invalid environment variable name {key!r}: use [A-Za-z_][A-Za-z0-9_]*"
            )
        if not isinstance(value, str):
            raise ValueError(f"environment variable {key} must be a string, got {value!r}")
        if "\x00" in value:
            raise ValueError(f"environment variable {key} contains a NUL byte")
        check_utf8(f"environment variable {key}", value)
        checked[key] = value
    return checked


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def shell_word(value: str) -> str:
    """Quote ``value`` as one shell word that is also one physical line.

    ``shlex.quote`` keeps a newline literally inside its quotes, which would start a new
    script line (and a line such as ``#BSUB -q other`` would be read as a directive), so
    values with control characters use bash's ``$'...'`` escapes instead.
    """
    if not _CONTROL.search(value):
        return shlex.quote(value)
    escaped = []
    for char in value:
        if char in "\\'":
            escaped.append("\\" + char)
        elif _CONTROL.match(char):
            escaped.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\x{ord(char):02x}"))
        else:
            escaped.append(char)
    return "$'" + "".join(escaped) + "'"


def environment_lines(env: Mapping[str, str]) -> list[str]:
    """``export NAME=value`` lines, one physical line each, values quoted literally."""
    return [f"export {key}={shell_word(value)}" for key, value in validate_env(env).items()]


def exit_file_path(script_path: str, index: int | None = None) -> str:
    """Where a job's script records its exit status: beside the script, per element."""
    stem = script_path[:-3] if script_path.endswith(".sh") else script_path
    return f"{stem}.exit" if index is None else f"{stem}.{index}.exit"


def exit_record_lines(script_path: str, is_array: bool) -> list[str]:
    """An EXIT trap that writes the script's exit status to a file beside it.

    The scheduler forgets finished jobs (LSF's CLEAN_PERIOD, Slurm's MinJobAge); this file
    is how a client that was away still learns how the job ended, on every executor.
    """
    stem = exit_file_path(script_path)[: -len(".exit")]
    if is_array:
        target = f'{shlex.quote(stem + ".")}"${{ARRAY_INDEX}}".exit'
    else:
        target = shlex.quote(stem + ".exit")
    return [
        f"{EXIT_FILE_VAR}={target}",
        f'trap \'echo "$?" > "${EXIT_FILE_VAR}"\' EXIT',
        # Bash killed by a signal would record the status of its last command; leaving
        # through these traps records 128+signal, as a scheduler reports it.
        "trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM",
    ]


#: One row of a scheduler's directive table: a value (the row is skipped when it is empty)
#: and how it is written as options.
DirectiveRow = tuple[Any, Callable[[Any], Sequence[str]]]


def table_options(rows: Iterable[DirectiveRow]) -> list[str]:
    """The options a directive table gives one job: each row whose value is set, in order."""
    return [option for value, render in rows if value for option in render(value)]


def directive_lines(
    prefix: str, options: Sequence[str], skip: Sequence[str], extra: Sequence[str]
) -> list[str]:
    """Directive lines: ``prefix option`` for each generated option, minus those containing
    any ``skip`` substring (config ``directives_skip``), then the config's
    ``extra_directives`` verbatim (the user wrote whole lines)."""
    generated = [f"{prefix} {option}" for option in options]
    return [*_without(generated, skip), *extra]


def directive_argv(
    prefix: str, header: Sequence[str], split: Callable[[str], list[str]] = shlex.split
) -> list[str]:
    """The options of a header's ``prefix`` lines as argv words, for a submit command that
    does not read them from the script (``split`` reads one line's words as the
    scheduler would); ValueError naming a line that cannot be split."""
    argv: list[str] = []
    for line in header:
        if line.startswith(prefix):
            try:
                argv.extend(split(line[len(prefix) :]))
            except ValueError as exc:
                raise ValueError(f"cannot parse directive {line!r}: {exc}") from None
    return argv


def _without(lines: Sequence[str], skip: Sequence[str]) -> list[str]:
    """``lines`` minus those containing any ``skip`` substring."""
    return [line for line in lines if not any(part in line for part in skip)]


def render_script(
    config: ClusterConfig,
    command: str,
    header_lines: Sequence[str],
    prologue: Sequence[str] | None = None,
    epilogue: Sequence[str] | None = None,
) -> str:
    """The text of a job script from directive lines the config has not been applied to
    yet (a third-party executor's ``build_header``): those matching ``directives_skip``
    are dropped and the config's ``extra_directives`` appended, as 0.8.1 did."""
    header = [*_without(header_lines, config.directives_skip), *config.extra_directives]
    return compose_script(config, command, header, prologue, epilogue)


def compose_script(
    config: ClusterConfig,
    command: str,
    header_lines: Sequence[str],
    prologue: Sequence[str] | None = None,
    epilogue: Sequence[str] | None = None,
    *,
    preamble: Sequence[str] = (),
    login_shell: bool = False,
) -> str:
    """The text of a job script whose directive lines are final (an executor's header,
    the config already applied).

    Config prologue lines come before the job's own and config epilogue lines after the
    job's, so site setup wraps pipeline setup. With an epilogue the script still exits
    with the command's status: an epilogue is clean-up, not the job's verdict.
    """
    if not isinstance(command, str) or not command.strip():
        raise ValueError(f"command must be a non-empty string, got {command!r}")
    for line in header_lines:
        check_single_line("directive", line)
    before = [*config.script_prologue, *(prologue or [])]
    after = [*(epilogue or []), *config.script_epilogue]
    for line in (*before, *after):
        if not isinstance(line, str):
            raise ValueError(f"prologue/epilogue lines must be strings, got {line!r}")
        check_single_line("prologue/epilogue line", line)
    shebang = config.shebang + (" -l" if login_shell and " -l" not in config.shebang else "")
    lines = [shebang, *header_lines, *preamble, *before, command.rstrip("\n")]
    if after:
        lines += ["__cluster_api_status=$?", *after, 'exit "$__cluster_api_status"']
    return "\n".join(lines) + "\n"


def script_path(directory: str, name: str, counter: int) -> str:
    return os.path.join(directory, f"{safe_job_name(name)}.{counter}.sh")


def encode_script(content: str, name: str) -> bytes:
    """The script's bytes; ValueError for text that cannot be written."""
    try:
        return content.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"job script of {name!r} is not valid UTF-8 (undecodable byte in "
            f"{content[max(exc.start - 40, 0) : exc.end + 40]!r})"
        ) from None


def write_script(directory: str, content: str, name: str, counter: int) -> str:
    """Write ``{directory}/{safe_name}.{counter}.sh`` (mode 0700) and return its path.

    Creation is exclusive: if the file exists (another executor, an earlier run) this
    raises FileExistsError and the caller picks the next counter; FileExistsError means
    nothing else, so a ``directory`` that is a file raises NotADirectoryError. The
    content is encoded before the file is created: text that cannot be written is a
    ValueError, never an empty script left behind.
    """
    data = encode_script(content, name)
    try:
        os.makedirs(directory, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", directory) from None
    path = script_path(directory, name, counter)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path
