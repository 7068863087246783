"""A scripted command runner to put behind ``Executor._call``, for tests without processes.

Every executor runs its scheduler commands through the one seam ``Executor._call(cmd,
timeout, env, stdin_file)``. ``FakeRunner`` stands in for it: answers are scripted per
program (``bsub``, ``squeue``...), every call is recorded, and an answer can be an exception
(``CommandFailedError`` with the stdout a real command printed before failing,
``CommandTimeoutError``) or a function of the argv for a scheduler with state::

    runner = FakeRunner()
    runner.on("bsub", "Job <101> is submitted to queue <normal>.\\n")
    runner.on("bjobs", CommandFailedError("LSF is down", stdout=""), bjobs_answer)
    with runner.patch():
        ...  # the first bjobs fails, every later one calls bjobs_answer(argv)
    assert runner.argvs("bsub") == [[...]]

Only the standard library is imported at module level, so the benchmarks can load this
file beside another release of cluster_api and patch that release's executors.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["Answer", "FakeRunner", "Reply", "RunnerCall"]

#: What a scripted program answers: its stdout, an exception to raise, or a function of the
#: argv (plain or async) that returns either of those, or raises.
Reply = str | BaseException
Answer = Reply | Callable[[list[str]], Reply | Awaitable[Reply]]


@dataclass(frozen=True)
class RunnerCall:
    """One command the code under test ran, with everything it passed to ``_call``."""

    argv: list[str]
    timeout: float
    env: dict[str, str] | None
    stdin_file: str | None

    @property
    def program(self) -> str:
        return os.path.basename(self.argv[0]) if self.argv else ""


class FakeRunner:
    """Scripted answers keyed by program; a program nobody scripted is a test error."""

    def __init__(self) -> None:
        self.calls: list[RunnerCall] = []
        self.active = 0  # calls in progress now
        self.peak = 0  # most calls ever in progress at once
        self._answers: dict[str, list[Answer]] = {}

    def on(self, program: str, *answers: Answer) -> FakeRunner:
        """Script ``program``: each call takes the next answer, the last one repeats.

        Scripting a program again replaces its answers."""
        if not answers:
            raise ValueError(f"no answer given for {program!r}")
        self._answers[program] = list(answers)
        return self

    def argvs(self, program: str) -> list[list[str]]:
        return [call.argv for call in self.calls if call.program == program]

    async def __call__(
        self,
        cmd: list[str],
        timeout: float = 100.0,
        env: dict[str, str] | None = None,
        stdin_file: str | None = None,
    ) -> str:
        call = RunnerCall([str(word) for word in cmd], timeout, env, stdin_file)
        self.calls.append(call)
        answers = self._answers.get(call.program)
        if not answers:
            raise AssertionError(f"FakeRunner: no answer scripted for {call.argv}")
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            reply = answer if isinstance(answer, (str, BaseException)) else answer(call.argv)
            if inspect.isawaitable(reply):
                reply = await reply
            if isinstance(reply, BaseException):
                raise reply
            return reply
        finally:
            self.active -= 1

    @contextmanager
    def patch(self, *executor_classes: type[Any]) -> Iterator[FakeRunner]:
        """Answer ``_call`` on these classes (default: ``cluster_api.core.Executor``, which
        every executor inherits it from) until the block ends."""
        if not executor_classes:
            from cluster_api.core import Executor

            executor_classes = (Executor,)
        saved = [(cls, cls.__dict__.get("_call")) for cls in executor_classes]
        runner = self

        async def _call(
            cmd: list[str],
            timeout: float = 100.0,
            env: dict[str, str] | None = None,
            stdin_file: str | None = None,
        ) -> str:
            return await runner(cmd, timeout, env, stdin_file)

        for cls in executor_classes:
            setattr(cls, "_call", staticmethod(_call))  # noqa: B010 (a method, replaced)
        try:
            yield self
        finally:
            for cls, original in saved:
                if original is None:
                    delattr(cls, "_call")
                else:
                    setattr(cls, "_call", original)  # noqa: B010
