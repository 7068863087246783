"""Issue #11 items 1, 2 and 11: what a shell or a scheduler reads from us is quoted, and
input that cannot be written safely is refused before anything is written.

Unit tests: the scheduler seam (``Executor._call``) is faked; real shells, the LSF
simulator and real Slurm are in ``test_hardening_security_integration.py``.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock

import pytest

import cluster_api.files as job_files
from cluster_api import ClusterConfig, LocalExecutor, LSFExecutor, ResourceSpec
from cluster_api.executors.slurm import SlurmExecutor
from cluster_api.script import validate_env, write_script

# Non-UTF-8 bytes as Python shows them in a str (a file name or environment value read
# from the system): a lone surrogate, which has no UTF-8 form.
NOT_UTF8 = os.fsdecode(b"caf\xe9")


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ResourceSpec.work_dir defaults to the cwd: keep every script inside the tmp dir."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def bsub(mock_call: AsyncMock) -> AsyncMock:
    mock_call.return_value = "Job <42> is submitted to queue <normal>."
    return mock_call


def lsf(**config: Any) -> LSFExecutor:
    return LSFExecutor(ClusterConfig(executor="lsf", **config))


def slurm() -> SlurmExecutor:
    return SlurmExecutor(ClusterConfig(executor="slurm"))


def folder(tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    path.mkdir()
    return str(path)


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def shell_words(line: str) -> list[str]:
    """The words sh makes of a command line (LSF joins the command words with spaces and
    hands the line to sh), with ``;``, ``&``, ``|``, ``<`` ... as words of their own."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def bsub_lines(header: list[str]) -> dict[str, str]:
    """``{flag: raw value text}`` of ``#BSUB flag value`` lines, quotes kept."""
    found = {}
    for line in header:
        flag, _, rest = line[len("#BSUB ") :].partition(" ")
        found[flag] = rest
    return found


# -- item 1: LSF default mode (the script path goes through LSF's /bin/sh) -----------------
@pytest.mark.parametrize("name", ["my data", "semi;touch PWNED", "it's", "a&b|c", "tab\there"])
async def test_lsf_script_path_is_one_shell_word(
    bsub: AsyncMock, tmp_path: Path, name: str
) -> None:
    work_dir = folder(tmp_path, name)
    record = await lsf().submit("true", "j", resources=ResourceSpec(work_dir=work_dir))
    argv = bsub.call_args.args[0]
    assert shell_words(" ".join(argv[argv.index("-cwd") + 2 :])) == [record.script_path]


async def test_lsf_use_stdin_passes_the_path_as_a_file_not_a_word(bsub: AsyncMock) -> None:
    record = await lsf(use_stdin=True).submit("true", "j")
    assert bsub.call_args.args[0] == ["bsub"]
    assert bsub.call_args.kwargs["stdin_file"] == record.script_path


def test_lsf_paths_are_always_double_quoted(tmp_path: Path) -> None:
    work_dir = folder(tmp_path, "plain")
    header = lsf().build_header("j", ResourceSpec(work_dir=work_dir))
    found = bsub_lines(header)
    assert found["-cwd"] == f'"{work_dir}"'
    assert found["-o"] == f'"{work_dir}/stdout.%J.log"'
    assert found["-e"] == f'"{work_dir}/stderr.%J.log"'


@pytest.mark.parametrize("char", ['"', "\\", "$", "`"])
async def test_lsf_refuses_a_work_dir_double_quotes_cannot_hold(
    bsub: AsyncMock, tmp_path: Path, char: str
) -> None:
    work_dir = folder(tmp_path, f"x{char}(touch PWNED)")
    with pytest.raises(ValueError, match=r"ResourceSpec\.work_dir .*LSF directive"):
        await lsf().submit("true", "j", resources=ResourceSpec(work_dir=work_dir))
    bsub.assert_not_called()
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("field", ["stdout_path", "stderr_path"])
async def test_lsf_refuses_a_log_path_double_quotes_cannot_hold(
    bsub: AsyncMock, tmp_path: Path, field: str
) -> None:
    spec = ResourceSpec(work_dir=str(tmp_path), **{field: "/logs/$(id).%J.log"})
    with pytest.raises(ValueError, match=rf"ResourceSpec\.{field} "):
        await lsf().submit("true", "j", resources=spec)
    bsub.assert_not_called()
    assert files_under(tmp_path) == []


async def test_lsf_refuses_percent_in_work_dir(bsub: AsyncMock, tmp_path: Path) -> None:
    """LSF replaces %J, %I, %U... in -cwd/-o/-e and has no escape for a literal '%'."""
    work_dir = folder(tmp_path, "run_%J")
    with pytest.raises(ValueError, match=r"ResourceSpec\.work_dir .*'%'"):
        await lsf().submit("true", "j", resources=ResourceSpec(work_dir=work_dir))
    assert files_under(tmp_path) == []


def test_lsf_log_path_placeholders_stay_usable(tmp_path: Path) -> None:
    spec = ResourceSpec(work_dir=str(tmp_path), stdout_path="/logs/o.%J.%I")
    assert bsub_lines(lsf().build_header("j", spec))["-o"] == '"/logs/o.%J.%I"'


@pytest.mark.parametrize("field", ["queue", "account"])
@pytest.mark.parametrize("value", ["a$b", 'a"b', 'it\'s "q"', "a`b`"])
async def test_lsf_refuses_a_value_double_quotes_cannot_hold(
    bsub: AsyncMock, tmp_path: Path, field: str, value: str
) -> None:
    """The old code fell back to shell single quotes, which LSF's directive parser does
    not read as a shell does; such a value is refused instead."""
    with pytest.raises(ValueError, match=rf"^{field} .*LSF directive"):
        await lsf().submit("true", "j", resources=ResourceSpec(**{field: value}))
    bsub.assert_not_called()
    assert files_under(tmp_path) == []


def test_lsf_odd_but_quotable_values_are_double_quoted(tmp_path: Path) -> None:
    spec = ResourceSpec(work_dir=str(tmp_path), queue="night queue", account="it's")
    found = bsub_lines(lsf().build_header("j", spec))
    assert (found["-q"], found["-P"]) == ('"night queue"', '"it\'s"')


# -- item 1: Slurm (sbatch reads #SBATCH lines itself) -------------------------------------
async def test_slurm_refuses_a_backslash_in_the_log_folder(
    mock_call: AsyncMock, tmp_path: Path
) -> None:
    work_dir = folder(tmp_path, "back\\slash")
    with pytest.raises(ValueError, match=r"ResourceSpec\.work_dir .*backslash"):
        await slurm().submit("true", "j", resources=ResourceSpec(work_dir=work_dir))
    mock_call.assert_not_called()
    assert files_under(tmp_path) == []


def test_slurm_refuses_a_backslash_in_a_given_log_path(tmp_path: Path) -> None:
    spec = ResourceSpec(work_dir=str(tmp_path), stderr_path="/logs/a\\b.log")
    with pytest.raises(ValueError, match=r"ResourceSpec\.stderr_path .*backslash"):
        slurm().build_header("j", spec)


def test_slurm_backslash_folder_with_logs_elsewhere_is_escaped(tmp_path: Path) -> None:
    """--chdir takes a backslash (escaped); only log paths cannot."""
    work_dir = folder(tmp_path, "back\\slash")
    spec = ResourceSpec(work_dir=work_dir, stdout_path="/logs/o.log", stderr_path="/logs/e.log")
    header = slurm().build_header("j", spec)
    escaped = work_dir.replace("\\", "\\\\")
    assert f'#SBATCH --chdir="{escaped}"' in header


# -- item 2: env keys, non-UTF-8 text ------------------------------------------------------
@pytest.mark.parametrize("key", ["FOO\n", "FOO\r", "1FOO", "FOO BAR", "FOO=1"])
def test_env_key_must_match_fully(key: str) -> None:
    with pytest.raises(ValueError, match="invalid environment variable name"):
        validate_env({key: "x"})


async def test_env_key_with_a_final_newline_never_reaches_a_script(
    bsub: AsyncMock, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="invalid environment variable name"):
        await lsf().submit("true", "j", env={"FOO\n": "x"})
    assert files_under(tmp_path) == []


def _non_utf8_submission(tmp_path: Path, where: str) -> dict[str, Any]:
    """submit() arguments with non-UTF-8 text in one place."""
    if where == "command":
        return {"command": f"echo {NOT_UTF8}"}
    if where == "work_dir":
        return {"resources": ResourceSpec(work_dir=os.fsdecode(os.fsencode(tmp_path) + b"/\xe9"))}
    if where == "env value":
        return {"env": {"GREETING": NOT_UTF8}}
    if where == "prologue":
        return {"prologue": [f"cd {NOT_UTF8}"]}
    return {"resources": ResourceSpec(stdout_path=f"/logs/{NOT_UTF8}.log")}


@pytest.mark.parametrize("where", ["command", "work_dir", "env value", "prologue", "stdout_path"])
@pytest.mark.parametrize("make", [lsf, slurm, LocalExecutor])
async def test_non_utf8_text_is_refused_before_anything_is_written(
    mock_call: AsyncMock, tmp_path: Path, where: str, make: Any
) -> None:
    with pytest.raises(ValueError, match="not valid UTF-8"):
        args = {"command": "true", **_non_utf8_submission(tmp_path, where)}
        await make().submit(args.pop("command"), "j", **args)
    mock_call.assert_not_called()
    assert files_under(tmp_path) == []


def test_write_script_refuses_non_utf8_content_without_leaving_a_file(tmp_path: Path) -> None:
    content = f"#!/bin/bash\necho {NOT_UTF8}\n"
    with pytest.raises(ValueError, match="not valid UTF-8"):
        write_script(str(tmp_path), content, "j", 1)
    assert files_under(tmp_path) == []


# -- item 11: a work_dir that is a file ----------------------------------------------------
@pytest.mark.parametrize("make", [lsf, slurm, LocalExecutor])
async def test_work_dir_that_is_a_file_is_refused_at_once(
    mock_call: AsyncMock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Any
) -> None:
    """The old code took makedirs' FileExistsError for "counter taken" and spun forever;
    the spy turns a spin into a failure instead of a hang."""
    calls: list[int] = []
    real_write = job_files.write_script

    def spy(directory: str, content: str, name: str, counter: int) -> str:
        calls.append(counter)
        assert len(calls) < 5, "write_script retried a folder that is a file"
        return real_write(directory, content, name, counter)

    monkeypatch.setattr(job_files, "write_script", spy)
    not_a_folder = tmp_path / "data.txt"
    not_a_folder.write_text("precious\n")
    with pytest.raises(ValueError, match=r"ResourceSpec\.work_dir .*is not a folder"):
        await make().submit("true", "j", resources=ResourceSpec(work_dir=str(not_a_folder)))
    assert not_a_folder.read_text() == "precious\n"
    mock_call.assert_not_called()


# -- a relative work_dir: the job starts inside it, so paths into it must be absolute -----
@pytest.mark.parametrize(("make", "answer"), [(lsf, "Job <42> is submitted"), (slurm, "42")])
async def test_relative_work_dir_is_made_absolute(
    mock_call: AsyncMock, tmp_path: Path, make: Any, answer: str
) -> None:
    (tmp_path / "rel dir").mkdir()
    mock_call.return_value = answer
    record = await make().submit("true", "j", resources=ResourceSpec(work_dir="rel dir"))
    folder = str(tmp_path / "rel dir")
    assert record.script_path == f"{folder}/capi-j.1.sh"
    assert record.resources is not None and record.resources.work_dir == folder
    script = Path(record.script_path).read_text()
    assert f"{folder}/stdout." in script  # the default log path in the directives
