"""The engine for batch schedulers: runs a scheduler's commands, with every policy once.

Exactly-once submission (a lost answer is looked up by the job's token before anything
is tried again), batching of many ids into few commands, and the tolerance of commands
that exit non-zero but still answer, for every scheduler alike.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping, Sequence

from .core import CommandAnswer, Executor
from .errors import ClusterAPIError, CommandFailedError, CommandTimeoutError, SubmitError
from .jobspec import JobSpec

logger = logging.getLogger("cluster_api")


class BatchExecutor(Executor):
    """An executor whose jobs live on a batch scheduler reached through commands."""

    async def _submit_exactly_once(
        self,
        spec: JobSpec,
        argv: list[str],
        *,
        stdin_file: str | None,
        env: Mapping[str, str] | None,
        transient: re.Pattern[str],
        parse: Callable[[str], str],
        retry_delay: float,
    ) -> str:
        """Submit, surviving one lost answer. After a timeout or a transient error the job
        is looked up by its unique token, ``retry_delay`` seconds later, before the
        command is tried again; only a lookup that succeeded and found nothing allows
        that, so the job is submitted exactly once. Any other refusal is final."""
        program = argv[0]
        failure: ClusterAPIError | None = None
        for _ in range(2):
            try:
                out = await self._run(argv, env=env, stdin_file=stdin_file)
            except CommandTimeoutError as exc:
                failure = exc
            except CommandFailedError as exc:
                if not transient.search(f"{exc} {exc.stderr} {exc.stdout}"):
                    raise SubmitError(f"{program} refused job {spec.name}: {exc}") from exc
                failure = exc
            else:
                try:
                    return parse(out)
                except SubmitError as exc:  # it answered, but not as documented
                    raise SubmitError(str(exc), job_may_exist=True) from exc
            logger.warning(
                "%s for %s failed (%s); checking whether it was submitted",
                program,
                spec.name,
                failure,
            )
            found = await self._look_up_submission(spec.name, spec.token, retry_delay)
            if found is not None:
                logger.info("job %s was submitted as %s despite the error", spec.name, found)
                return found
        raise SubmitError(f"{program} failed twice for job {spec.name}: {failure}") from failure

    async def _run_batches(
        self, argv: Sequence[str], ids: Sequence[str], size: int
    ) -> list[CommandAnswer]:
        """Run ``argv + batch`` for batches of at most ``size`` ids, concurrently (still at
        most ``max_concurrent_commands`` at once); what each printed, for the caller to
        read per-id answers from. A batch that fails is logged, not raised: cancel
        commands exit non-zero when some jobs had already ended, and the others were
        still cancelled."""

        async def one(batch: Sequence[str]) -> CommandAnswer:
            try:
                return CommandAnswer(list(batch), await self._run([*argv, *batch]))
            except CommandFailedError as exc:
                logger.info("%s reported: %s", argv[0], exc)
                return CommandAnswer(list(batch), exc.stdout, exc.stderr or str(exc), failed=True)

        return list(
            await asyncio.gather(*(one(ids[i : i + size]) for i in range(0, len(ids), size)))
        )
