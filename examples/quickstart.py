"""Quick start: run one job and one small array on this machine, no config file needed.

    python examples/quickstart.py

The same code runs on a cluster when ``cluster_api.yaml`` says ``executor: lsf`` (or
``slurm``): only the config changes.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from cluster_api import JobMonitor, JobRecord, ResourceSpec, create_executor


def report(job: JobRecord) -> None:
    print(f"job {job.name} ({job.job_id}) ended {job.status.value}, exit code {job.exit_code}")


async def main() -> None:
    work_dir = Path(tempfile.mkdtemp(prefix="cluster_api-quickstart-"))
    executor = create_executor(executor="local", poll_interval=1.0)
    resources = ResourceSpec(work_dir=str(work_dir), walltime="00:05")

    async with JobMonitor(executor) as monitor:
        job = await executor.submit("echo hello from $(hostname)", "hello", resources=resources)
        job.on_exit(report)
        array = await executor.submit_array(
            'echo "element $ARRAY_INDEX"', "squares", (1, 4), resources=resources, max_concurrent=2
        )
        array.on_success(lambda a: print(f"array {a.name}: {a.completed_elements} elements done"))
        await monitor.wait_for(job, array, timeout=60)

    output = (work_dir / f"stdout.{job.job_id}.log").read_text().strip()
    print(f"output: {output}")
    print(f"logs and scripts in {work_dir}")


if __name__ == "__main__":
    asyncio.run(main())
