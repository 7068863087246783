"""The job-file seam: where job scripts are written and exit files read.

An executor's files live where its commands run: on this machine by default
(`LocalFiles`), on the login node when the config names an ``ssh`` host (`RemoteFiles`).
Writing and removing are awaited; exit files are read by the status rule, which is
synchronous and runs for every job on every poll, so a remote reader fetches all the exit
files a poll may need in one command first (`JobFiles.refresh`) and answers from that.
The status code reads through `ACTIVE_FILES`, which the executor sets while it works.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from typing import Protocol

from .errors import ClusterAPIError
from .models import JobRecord
from .remote import RemoteFileExistsError, SSHRunner
from .script import encode_script, exit_file_path, script_path, write_script

#: Where a remote work_dir is put when neither the job nor the config names one.
REMOTE_WORK_DIR = "cluster-api-jobs"


class JobFiles(Protocol):
    """The files of one executor's jobs."""

    async def write_script(self, directory: str, content: str, name: str, counter: int) -> str:
        """Write ``{directory}/{name}.{counter}.sh`` (0700, folder made if missing) and return
        its path; FileExistsError when it exists, NotADirectoryError for a file in the way."""
        ...

    async def write_private(self, path: str, content: str) -> None:
        """Write a new file only its owner may read (0600, folder made if missing), for
        what the job reads but nobody else should; FileExistsError when it exists,
        NotADirectoryError for a file in the way of its folder."""
        ...

    async def remove(self, paths: Sequence[str]) -> None:
        """Remove these files; missing ones are fine."""
        ...

    async def refresh(self, paths: Sequence[str]) -> None:
        """Fetch these files, so `read_text` answers from what they hold now."""
        ...

    def read_text(self, path: str) -> str | None:
        """A file's text, None when it is missing or unreadable."""
        ...

    async def absolute(self, work_dir: str | None) -> str:
        """``work_dir`` made absolute where the jobs run (None: the default folder there)."""
        ...


class LocalFiles:
    """This machine's files."""

    async def write_script(self, directory: str, content: str, name: str, counter: int) -> str:
        return write_script(directory, content, name, counter)

    async def write_private(self, path: str, content: str) -> None:
        data = content.encode("utf-8")
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except FileExistsError:  # FileExistsError must mean the file itself
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", os.path.dirname(path)) from None
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)

    async def remove(self, paths: Sequence[str]) -> None:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    async def refresh(self, paths: Sequence[str]) -> None:
        """Nothing to fetch: `read_text` reads the file itself."""

    def read_text(self, path: str) -> str | None:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return None

    async def absolute(self, work_dir: str | None) -> str:
        return os.path.abspath(work_dir if work_dir is not None else os.getcwd())


class RemoteFiles:
    """The files on the host an `SSHRunner` reaches, in one command per operation."""

    def __init__(self, runner: SSHRunner, timeout: float) -> None:
        self.runner = runner
        self.timeout = timeout
        self._texts: dict[str, str | None] = {}
        self._home: str | None = None

    async def write_script(self, directory: str, content: str, name: str, counter: int) -> str:
        encode_script(content, name)  # text that cannot be written is refused here
        path = script_path(directory, name, counter)
        try:
            await self.runner.write_script(path, content, timeout=self.timeout)
        except RemoteFileExistsError:
            raise FileExistsError(path) from None
        return path

    async def write_private(self, path: str, content: str) -> None:
        try:
            await self.runner.write_new(path, content, mode=0o600, timeout=self.timeout)
        except RemoteFileExistsError:
            raise FileExistsError(path) from None

    async def remove(self, paths: Sequence[str]) -> None:
        await self.runner.remove_files(list(paths), timeout=self.timeout)

    async def refresh(self, paths: Sequence[str]) -> None:
        self._texts = (
            await self.runner.read_files(list(paths), timeout=self.timeout) if paths else {}
        )

    def read_text(self, path: str) -> str | None:
        return self._texts.get(path)

    async def absolute(self, work_dir: str | None) -> str:
        """Relative folders are under the remote home, which one ``pwd`` tells (an ssh
        command starts there); never this machine's current folder."""
        if work_dir is not None and posixpath.isabs(work_dir):
            return posixpath.normpath(work_dir)
        if self._home is None:
            answer = await self.runner.run(["pwd"], timeout=self.timeout)
            home = answer.output().strip()
            if not posixpath.isabs(home):
                raise ClusterAPIError(
                    f"{self.runner.target.destination}: cannot tell the remote home ({home!r})"
                )
            self._home = home
        return posixpath.join(self._home, work_dir if work_dir is not None else REMOTE_WORK_DIR)


LOCAL_FILES = LocalFiles()

#: The files the status code reads exit files from: the working executor's.
ACTIVE_FILES: ContextVar[JobFiles] = ContextVar("cluster_api_active_files", default=LOCAL_FILES)


@contextlib.contextmanager
def reading_from(files: JobFiles) -> Iterator[None]:
    """Make the status code read exit files from ``files`` inside the block."""
    token = ACTIVE_FILES.set(files)
    try:
        yield
    finally:
        ACTIVE_FILES.reset(token)


def exit_paths(records: Iterable[JobRecord]) -> list[str]:
    """Every exit file these jobs' scripts may have left (one per array element)."""
    paths = []
    for record in records:
        if record.script_path is None or record.status.is_terminal:
            continue
        if record.array_elements:
            paths += [exit_file_path(record.script_path, i) for i in record.array_elements]
        else:
            paths.append(exit_file_path(record.script_path))
    return paths
