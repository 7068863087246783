"""Quick start: run one job and one small array on this machine, no config file needed.

    python examples/quickstart.py

The same code runs on a cluster when ``cluster_api.yaml`` says ``executor: lsf`` (or
``slurm``): only the config changes. The jobs write their scripts and logs (and the
executor its bookkeeping, ``log_directory``) into a temporary folder, shown and then removed
at the end, so running the demo leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from cluster_api import JobMonitor, JobRecord, ResourceSpec, create_executor


def report(job: JobRecord) -> None:
    print(f"job {job.name} ({job.job_id}) ended {job.status.value}, exit code {job.exit_code}")


async def run_demo(work_dir: Path) -> None:
    executor = create_executor(executor="local", poll_interval=1.0, log_directory=str(work_dir))
    resources = ResourceSpec(work_dir=str(work_dir), walltime="00:05")

    async with JobMonitor(executor) as monitor:
        job = await executor.submit("echo hello from $(hostname)", "hello", resources=resources)
        job.on_exit(report)
        array = await executor.submit_array(
            'echo "element $ARRAY_INDEX"', "elements", (1, 4), resources=resources, max_concurrent=2
        )
        array.on_exit(
            lambda a: print(
                f"array {a.name}: {a.completed_elements}/{a.element_count} elements ended, "
                f"failed: {a.failed_element_indices or 'none'}"
            )
        )
        await monitor.wait_for(job, array, timeout=60)

    output = (work_dir / f"stdout.{job.job_id}.log").read_text().strip()
    print(f"output of {job.name}: {output}")
    print(f"the script it ran ({job.script_path}):")
    print(Path(str(job.script_path)).read_text().rstrip())


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cluster_api-quickstart-") as folder:
        asyncio.run(run_demo(Path(folder)))
    # Your own jobs keep their scripts and logs in their work_dir (default: the cwd).
    print(f"removed {folder}, the demo's scripts and logs")


if __name__ == "__main__":
    main()
