"""The parts every simulated scheduler shares (standard library only, run by path).

- ``store``: the state folder (job table, control file, call log, lock).
- ``jobs``: job and element records and their states (``PEND RUN DONE EXIT``).
- ``faults``: outage, empty or garbage answers, slow commands, token-lookup faults.
- ``procs``: processes from ``/proc``, signals by process group, the job token.
- ``runner``: job supervision (dependencies, slots, start, limits, kills, endings),
  shaped by a ``JobStyle``.
- ``depend``: when a parsed dependency tree is met, not yet, or never.
- ``cli``: the entry point around each command (call log, faults, usage errors).

Commands start thousands of times in a test run, so start-up counts: the launcher
imports no ``cluster_api``, a command loads only its own module, and records are plain
classes and NamedTuples rather than dataclasses (``dataclasses`` pulls in ``inspect``,
some 6 ms per command).

Adding a scheduler (say PBS Pro, as ``cluster_api/testing/pbssim/``): write its
``settings`` (state-folder variable, command names, knobs), ``formats`` (ids like
``123.server``, ``qstat -f -F json``), the parser of ``-W depend=afterok:1`` into the
tree of ``depend`` (afterok -> done, afternotok -> exit, afterany -> ended, after ->
started), a ``JobStyle`` (``PBS_JOBID``, ``PBS_ARRAY_INDEX``, ``^array_index^``), one
module per command (``qsub``, ``qstat``, ``qdel``) that reads and writes the shared job
table, a ``main`` with its ``cli.Scheduler`` and a ``__main__`` launcher like
``lsfsim``'s (its folder name must end in ``sim`` so ``procs.runner_alive`` knows its
runners). Its Python handle subclasses ``cluster_api.testing.handle.SimulatorHandle``
(naming commands, state-folder variable, knobs and launcher, as ``LSFSimulator`` does):
state folder, wrappers, knobs, faults, the call log and ``kill_everything`` come with it.
"""
