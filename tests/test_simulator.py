"""Round trips through the LSF simulator (cluster_api.testing), with real processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cluster_api.testing import LSFSimulator, install_simulator

pytestmark = pytest.mark.integration  # every test here starts processes

FIELDS = (
    "jobid jobindex job_name stat exit_code exec_host max_mem submit_time start_time "
    "finish_time exit_reason user queue"
)
SHORT_TIME = re.compile(r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d$")
YEAR_TIME = re.compile(r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}$")
SUBMITTED = re.compile(r"^Job <(\d+)> is submitted to queue <normal>\.\n$")


def run(*argv: str, stdin: str = "", **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, timeout=30, **kwargs
    )


def bhist_l(*ids: int | str) -> str:
    """``bhist -l`` output with LSF's wrapped lines joined back."""
    result = run("bhist", "-l", *(str(i) for i in ids))
    assert all(len(line) < 80 for line in result.stdout.splitlines())
    return re.sub(r"\n {21}", "", result.stdout)


def bsub(script: str, *options: str, **kwargs: Any) -> int:
    result = run("bsub", *options, stdin=script, **kwargs)
    assert result.returncode == 0, result.stderr
    match = SUBMITTED.match(result.stdout)
    assert match, result.stdout
    return int(match.group(1))


def bjobs_json(*args: str) -> tuple[dict[str, Any], int]:
    result = run("bjobs", "-a", "-o", FIELDS, "-json", *args)
    return json.loads(result.stdout), result.returncode


def records(*ids: int | str) -> list[dict[str, str]]:
    data, _ = bjobs_json(*(str(i) for i in ids))
    rows: list[dict[str, str]] = data["RECORDS"]
    return rows


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def stat(sim: LSFSimulator, job_id: int, index: int = 0) -> str:
    return sim.status(job_id, index)


def finished(sim: LSFSimulator, job_id: int) -> bool:
    return all(e["stat"] in ("DONE", "EXIT") for e in sim.job(job_id)["elements"].values())


# ----------------------------------------------------------------------------- bsub / bjobs


def test_submit_from_stdin_and_bjobs_json_shape(lsf_simulator: LSFSimulator) -> None:
    job_id = bsub("echo hello\nsleep 0.2\n", "-J", "first")
    data, code = bjobs_json(str(job_id))
    assert code == 0
    assert data["COMMAND"] == "bjobs" and data["JOBS"] == 1
    (row,) = data["RECORDS"]
    assert set(row) == {f.upper() for f in FIELDS.split()}
    assert all(isinstance(v, str) for v in row.values())
    assert row["JOBID"] == str(job_id) and row["JOBINDEX"] == "0"
    assert row["JOB_NAME"] == "first" and row["QUEUE"] == "normal"
    assert row["STAT"] in ("PEND", "RUN")
    assert SHORT_TIME.match(row["SUBMIT_TIME"])

    lsf_simulator.wait_idle(10)
    (row,) = records(job_id)
    assert row["STAT"] == "DONE"
    assert row["EXIT_CODE"] == "" and row["EXIT_REASON"] == ""
    assert row["EXEC_HOST"]
    assert re.fullmatch(r"\d+(\.\d)? [KMG]bytes", row["MAX_MEM"]), row["MAX_MEM"]
    assert row["FINISH_TIME"].endswith(" L")
    assert SHORT_TIME.match(row["FINISH_TIME"][:-2])
    assert SHORT_TIME.match(row["START_TIME"])


def test_unknown_id_gives_error_record_and_255(lsf_simulator: LSFSimulator) -> None:
    job_id = bsub("true")
    lsf_simulator.wait_idle(10)
    data, code = bjobs_json(str(job_id), "4242", f"{job_id}[7]")
    assert code == 255
    assert data["JOBS"] == 3
    assert data["RECORDS"][0]["JOBID"] == str(job_id)
    assert data["RECORDS"][1] == {"JOBID": "4242", "ERROR": "Job <4242> is not found"}
    assert data["RECORDS"][2]["ERROR"] == f"Job <{job_id}[7]> is not found"


def test_nonzero_exit_and_bhist(lsf_simulator: LSFSimulator) -> None:
    job_id = bsub("exit 3\n")
    lsf_simulator.wait_idle(10)
    (row,) = records(job_id)
    assert row["STAT"] == "EXIT" and row["EXIT_CODE"] == "3" and row["EXIT_REASON"] == ""
    assert run("bhist", "-l", str(job_id)).returncode == 0
    text = bhist_l(job_id)
    assert f"Job <{job_id}>, Job Name <exit 3>, User <" in text
    assert "Exited with exit code 3. The CPU time used is" in text
    unformatted = run("bhist", "-l", "-UF", str(job_id)).stdout
    assert "Exited with exit code 3. The CPU time used is" in unformatted
    description = bsub("true", "-Jd", "token-" + "x" * 80)
    lsf_simulator.wait_idle(10)
    assert f"Job Description <token-{'x' * 80}>" in bhist_l(description)
    row = json.loads(
        run("bjobs", "-a", "-o", "jobid job_description", "-json", str(description)).stdout
    )["RECORDS"][0]
    assert row == {"JOBID": str(description), "JOB_DESCRIPTION": "token-" + "x" * 80}


def test_command_words_and_wait_flag(lsf_simulator: LSFSimulator, tmp_path: Path) -> None:
    result = run("bsub", "-K", "-o", "k.txt", "echo   spaced; exit 4", cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    assert SUBMITTED.match(result.stdout)
    assert (tmp_path / "k.txt").read_text() == "spaced\n"
    job_id = bsub("", "-o", "w.txt", "echo", "a  b", cwd=tmp_path)
    lsf_simulator.wait_idle(10)
    assert records(job_id)[0]["JOB_NAME"] == "echo a  b"
    assert (tmp_path / "w.txt").read_text() == "a b\n"


def test_listing_hides_finished_jobs_without_a(lsf_simulator: LSFSimulator) -> None:
    result = run("bjobs")
    assert result.returncode == 0 and result.stderr == "No unfinished job found\n"
    result = run("bjobs", "-a")
    assert result.stderr == "No job found\n"
    done_id = bsub("true")
    lsf_simulator.wait_idle(10)
    running_id = bsub("sleep 5")
    listing = run("bjobs", "-o", "jobid stat", "-json")
    ids = [r["JOBID"] for r in json.loads(listing.stdout)["RECORDS"]]
    assert ids == [str(running_id)]
    listing = run("bjobs", "-a", "-o", "jobid stat", "-json")
    ids = [r["JOBID"] for r in json.loads(listing.stdout)["RECORDS"]]
    assert ids == [str(done_id), str(running_id)]
    # As IBM documents: `bjobs ID` of a finished job without -a finds no unfinished job.
    plain = run("bjobs", str(done_id))
    assert plain.returncode == 0 and plain.stderr == "No unfinished job found\n"
    table = run("bjobs", str(running_id))
    assert table.stdout.split("\n")[0].split() == [
        "JOBID", "USER", "STAT", "QUEUE", "FROM_HOST", "EXEC_HOST", "JOB_NAME", "SUBMIT_TIME",
    ]  # fmt: skip


def test_directives_and_command_line_precedence(
    lsf_simulator: LSFSimulator, tmp_path: Path
) -> None:
    script = (
        "#!/bin/bash\n"
        "#BSUB -J from_script\n"
        "#BSUB -o out.%J\n"
        '#BSUB -q "normal"\n'
        "echo name=$LSB_JOBNAME id=$LSB_JOBID index=$LSB_JOBINDEX\n"
        "#BSUB -J ignored_after_first_command\n"
    )
    job_id = bsub(script, "-J", "from_cli", cwd=tmp_path)
    lsf_simulator.wait_idle(10)
    assert records(job_id)[0]["JOB_NAME"] == "from_cli"
    text = (tmp_path / f"out.{job_id}").read_text()
    assert text == f"name=from_cli id={job_id} index=0\n"


def test_script_argument_directives_need_parse_script(
    lsf_simulator: LSFSimulator, tmp_path: Path
) -> None:
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\n#BSUB -J scripted\necho ran\n")
    script.chmod(0o755)
    plain = bsub("", "./job.sh", cwd=tmp_path)
    lsf_simulator.set(parse_script=True)
    parsed = bsub("", "-o", "o.txt", "./job.sh", cwd=tmp_path)
    lsf_simulator.wait_idle(10)
    assert records(plain)[0]["JOB_NAME"] == "./job.sh"
    assert records(parsed)[0]["JOB_NAME"] == "scripted"
    assert (tmp_path / "o.txt").read_text() == "ran\n"


def test_cwd_output_error_files_and_env(
    lsf_simulator: LSFSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIM_MARK", "inherited")
    script = "pwd; echo mark=$SIM_MARK extra=$EXTRA; echo oops >&2"
    job_id = bsub(script, "-cwd", "run_%J", "-o", "o_%J.txt", "-e", "e_%J.txt", cwd=tmp_path)
    none_id = bsub(script, "-env", "none", "-o", "none.txt", cwd=tmp_path)
    all_id = bsub(script, "-env", "all, EXTRA=x1, ~SIM_MARK", "-o", "all.txt", cwd=tmp_path)
    lsf_simulator.wait_idle(10)
    run_dir = tmp_path / f"run_{job_id}"
    assert (run_dir / f"o_{job_id}.txt").read_text() == f"{run_dir}\nmark=inherited extra=\n"
    assert (run_dir / f"e_{job_id}.txt").read_text() == "oops\n"
    assert (tmp_path / "none.txt").read_text() == f"{tmp_path}\nmark= extra=\noops\n"
    assert (tmp_path / "all.txt").read_text() == f"{tmp_path}\nmark= extra=x1\noops\n"
    assert none_id != all_id


def test_validation_errors_submit_nothing(lsf_simulator: LSFSimulator) -> None:
    cases = [
        ("-W", "abc"),
        ("-W", "1:75"),
        ("-J", "arr[5-1]"),
        ("-J", "arr[1-3%0]"),
        ("-J", "arr[x]"),
        ("-M", "lots"),
        ("-n", "0"),
        ("-w", "done(999)"),
        ("-w", "done(1) &&"),
        ("-Z",),
    ]
    for options in cases:
        result = run("bsub", *options, stdin="true\n")
        assert result.returncode != 0, options
        assert result.stdout == "", options
        assert result.stderr.strip(), options
    assert run("bsub", "-Z", stdin="true").returncode == 255
    assert "Illegal option -- Z" in run("bsub", "-Z", stdin="true").stderr
    assert lsf_simulator.jobs() == {}


# ----------------------------------------------------------------------------- arrays, slots


def test_array_respects_percent_limit(lsf_simulator: LSFSimulator, tmp_path: Path) -> None:
    script = "echo $LSB_JOBINDEX/$LSB_JOBINDEX_END; sleep 0.4\n"
    job_id = bsub(script, "-J", "arr[1-6%2]", "-o", "a.%J.%I", cwd=tmp_path)
    rows = records(job_id)
    assert sum(r["STAT"] == "RUN" for r in rows) <= 2
    peak = 0
    while not finished(lsf_simulator, job_id):
        elements = lsf_simulator.job(job_id)["elements"].values()
        peak = max(peak, sum(e["stat"] == "RUN" for e in elements))
        time.sleep(0.02)
    rows = records(job_id)
    assert [r["JOBINDEX"] for r in rows] == ["1", "2", "3", "4", "5", "6"]
    assert [r["JOB_NAME"] for r in rows] == [f"arr[{i}]" for i in range(1, 7)]
    assert {r["JOBID"] for r in rows} == {str(job_id)}
    assert all(r["STAT"] == "DONE" for r in rows)
    assert peak == 2
    assert (tmp_path / f"a.{job_id}.4").read_text() == "4/6\n"
    one = records(f"{job_id}[3]")
    assert len(one) == 1 and one[0]["JOBINDEX"] == "3"


def test_slots_knob_limits_whole_cluster(lsf_simulator: LSFSimulator) -> None:
    lsf_simulator.set(slots=2)
    big = bsub("sleep 0.4", "-n", "2")
    small = [bsub("sleep 0.2") for _ in range(2)]
    peak = 0
    while not all(finished(lsf_simulator, j) for j in [big, *small]):
        running = [j for j in [big, *small] if stat(lsf_simulator, j) == "RUN"]
        peak = max(peak, sum(2 if j == big else 1 for j in running))
        time.sleep(0.02)
    assert peak == 2
    assert records(big)[0]["EXEC_HOST"].startswith("2*")


# ----------------------------------------------------------------------------- limits, kill


def test_run_limit_kills_with_term_runlimit(lsf_simulator: LSFSimulator) -> None:
    lsf_simulator.set(seconds_per_minute=0.5, job_terminate_interval=0.5)
    job_id = bsub("sleep 30", "-W", "1")
    wait_for(lambda: finished(lsf_simulator, job_id), timeout=8)
    (row,) = records(job_id)
    assert (row["STAT"], row["EXIT_CODE"], row["EXIT_REASON"]) == ("EXIT", "140", "TERM_RUNLIMIT")
    assert "TERM_RUNLIMIT: job killed after reaching LSF run time limit" in bhist_l(job_id)


def test_memory_limit_kills_with_term_memlimit(lsf_simulator: LSFSimulator) -> None:
    lsf_simulator.set(mem_sample_interval=0.1, job_terminate_interval=0.5)
    hog = f"{sys.executable} -c 'import time; x = bytearray(150 * 2**20); time.sleep(20)'"
    job_id = bsub(hog, "-M", "60")
    small = bsub("sleep 0.3", "-M", "1GB")
    wait_for(lambda: finished(lsf_simulator, job_id), timeout=10)
    (row,) = records(job_id)
    assert (row["STAT"], row["EXIT_REASON"]) == ("EXIT", "TERM_MEMLIMIT")
    assert row["MAX_MEM"].endswith("Mbytes") and int(row["MAX_MEM"].split()[0]) >= 60
    lsf_simulator.wait_idle(10)
    assert records(small)[0]["STAT"] == "DONE"


def test_bkill_messages_and_outcomes(lsf_simulator: LSFSimulator) -> None:
    running = bsub("sleep 30")
    pending = bsub("sleep 30", "-w", f"done({running})")
    as_done = bsub("sleep 30")
    admin = bsub("sleep 30")
    wait_for(lambda: stat(lsf_simulator, running) == "RUN")

    result = run("bkill", str(running), str(pending))
    assert result.returncode == 0
    assert result.stdout == (
        f"Job <{running}> is being terminated\nJob <{pending}> is being terminated\n"
    )
    result = run("bkill", "-d", str(as_done))
    assert result.stdout == f"Job <{as_done}> is being terminated\n"
    lsf_simulator.kill_as_admin(admin)
    wait_for(lambda: all(finished(lsf_simulator, j) for j in (running, as_done, admin)))

    rows = {r["JOBID"]: r for r in records(running, pending, as_done, admin)}
    assert (rows[str(running)]["STAT"], rows[str(running)]["EXIT_CODE"]) == ("EXIT", "130")
    assert rows[str(running)]["EXIT_REASON"] == "TERM_OWNER"
    assert rows[str(pending)]["STAT"] == "EXIT" and rows[str(pending)]["START_TIME"] == ""
    assert rows[str(pending)]["EXIT_REASON"] == "TERM_OWNER"
    assert rows[str(as_done)]["STAT"] == "DONE"
    assert rows[str(admin)]["EXIT_REASON"] == "TERM_ADMIN"

    result = run("bkill", str(running), "777")
    assert result.returncode == 255
    assert result.stderr == (
        f"Job <{running}>: Job has already finished\nJob <777>: No matching job found\n"
    )
    assert "Signal <KILL> requested by user or administrator" in bhist_l(running)


def test_bkill_array_element_and_name(lsf_simulator: LSFSimulator) -> None:
    array = bsub("sleep 30", "-J", "many[1-3]")
    other = bsub("sleep 30", "-J", "victim")
    wait_for(lambda: all(e["stat"] == "RUN" for e in lsf_simulator.job(array)["elements"].values()))
    result = run("bkill", f"{array}[2]")
    assert result.stdout == f"Job <{array}[2]> is being terminated\n"
    wait_for(lambda: stat(lsf_simulator, array, 2) == "EXIT")
    assert stat(lsf_simulator, array, 1) == "RUN" and stat(lsf_simulator, array, 3) == "RUN"
    result = run("bkill", "-J", "vic*")
    assert result.stdout == f"Job <{other}> is being terminated\n"
    wait_for(lambda: finished(lsf_simulator, other))
    result = run("bkill", "0")
    assert result.stdout == f"Job <{array}> is being terminated\n"
    lsf_simulator.wait_idle(10)
    stats = [r["STAT"] for r in records(array)]
    assert stats == ["EXIT", "EXIT", "EXIT"]


# ----------------------------------------------------------------------------- dependencies


def test_dependency_chain_runs_in_order(lsf_simulator: LSFSimulator, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    first = bsub(f"while [ ! -e {gate} ]; do sleep 0.05; done", "-J", "stage1")
    second = bsub("sleep 0.1", "-w", f"done({first})")
    third = bsub("true", "-w", "ended(stage1) && done(" + str(second) + ")")
    either = bsub("true", "-w", f"exit({first}) || done({second})")
    time.sleep(0.2)
    assert [stat(lsf_simulator, j) for j in (second, third, either)] == ["PEND"] * 3
    assert records(second)[0]["STAT"] == "PEND"
    gate.touch()
    lsf_simulator.wait_idle(15)
    jobs = {j: lsf_simulator.job(j)["elements"]["0"] for j in (first, second, third, either)}
    assert all(e["stat"] == "DONE" for e in jobs.values())
    assert jobs[second]["start_time"] >= jobs[first]["finish_time"]
    assert jobs[third]["start_time"] >= jobs[second]["finish_time"]
    assert jobs[either]["start_time"] >= jobs[second]["finish_time"]


def test_unsatisfiable_dependency_pends_or_is_orphaned_with_ti(
    lsf_simulator: LSFSimulator,
) -> None:
    failing = bsub("exit 1")
    stuck = bsub("true", "-w", f"done({failing})")
    orphan = bsub("true", "-w", f"done({failing})", "-ti")
    wait_for(lambda: finished(lsf_simulator, orphan))
    rows = {r["JOBID"]: r for r in records(stuck, orphan)}
    assert rows[str(orphan)]["STAT"] == "EXIT"
    assert rows[str(orphan)]["EXIT_REASON"] == "TERM_ORPHAN_SYSTEM"
    time.sleep(0.3)
    assert stat(lsf_simulator, stuck) == "PEND"


# ----------------------------------------------------------------------------- purge, faults


def test_clean_period_purges_from_bjobs_but_not_bhist(lsf_simulator: LSFSimulator) -> None:
    job_id = bsub("true")
    lsf_simulator.wait_idle(10)
    assert records(job_id)[0]["STAT"] == "DONE"
    lsf_simulator.set(clean_period=0.5)
    time.sleep(0.6)
    data, code = bjobs_json(str(job_id))
    assert code == 255
    assert data["RECORDS"] == [{"JOBID": str(job_id), "ERROR": f"Job <{job_id}> is not found"}]
    assert "Done successfully. The CPU time used is" in bhist_l(job_id)
    missing = run("bhist", "-l", "31337")
    assert missing.returncode != 0 and missing.stderr == "No matching job found\n"


def test_outage_garbage_empty_and_slow(lsf_simulator: LSFSimulator) -> None:
    job_id = bsub("true")
    lsf_simulator.outage(30)
    down = run("bjobs", "-a")
    assert down.returncode == 255 and down.stderr == "LSF is down. Please wait ...\n"
    assert run("bsub", stdin="true").returncode == 255
    assert run("bkill", str(job_id)).returncode == 255
    lsf_simulator.outage(0.3)  # ends by itself
    time.sleep(0.35)
    assert run("bjobs", "-a").returncode == 0
    lsf_simulator.garbage_output_once("bjobs")
    raw = subprocess.run(["bjobs", "-a", "-o", "jobid", "-json"], capture_output=True, timeout=30)
    assert raw.returncode == 0
    with pytest.raises(UnicodeDecodeError):
        raw.stdout.decode("utf-8")
    lsf_simulator.empty_output_once("bjobs")
    empty = run("bjobs", "-a", "-o", "jobid", "-json", str(job_id))
    assert (empty.returncode, empty.stdout, empty.stderr) == (0, "", "")
    assert records(job_id)[0]["JOBID"] == str(job_id)
    lsf_simulator.slow(0.5, "bjobs")
    start = time.monotonic()
    run("bjobs", "-a")
    assert time.monotonic() - start >= 0.5
    lsf_simulator.slow(0, "bjobs")
    assert len(lsf_simulator.jobs()) == 1


def test_bsub_hang_after_submit_still_submits(lsf_simulator: LSFSimulator) -> None:
    lsf_simulator.bsub_hang_after_submit(4)
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run(["bsub"], input="sleep 0.1", capture_output=True, text=True, timeout=1.5)
    assert len(lsf_simulator.jobs()) == 1
    lsf_simulator.wait_idle(10)
    assert SUBMITTED.match(run("bsub", stdin="true").stdout)


def test_time_formats_with_and_without_year(
    lsf_simulator: LSFSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = bsub("true")
    lsf_simulator.wait_idle(10)
    (row,) = records(job_id)
    assert SHORT_TIME.match(row["SUBMIT_TIME"]) and SHORT_TIME.match(row["START_TIME"])
    monkeypatch.setenv("LSB_DISPLAY_YEAR", "Y")
    (row,) = records(job_id)
    assert YEAR_TIME.match(row["SUBMIT_TIME"]), row["SUBMIT_TIME"]
    assert YEAR_TIME.match(row["FINISH_TIME"][:-2]) and row["FINISH_TIME"].endswith(" L")
    assert str(time.localtime().tm_year) in row["START_TIME"]
    monkeypatch.delenv("LSB_DISPLAY_YEAR")
    lsf_simulator.set(display_year=True)
    assert YEAR_TIME.match(records(job_id)[0]["SUBMIT_TIME"])


def test_concurrent_bsub_calls_get_unique_ids(lsf_simulator: LSFSimulator) -> None:
    with ThreadPoolExecutor(max_workers=20) as pool:
        ids = list(pool.map(lambda i: bsub(f"echo {i}"), range(20)))
    assert sorted(ids) == list(range(1, 21))
    assert lsf_simulator.max_concurrency("bsub") > 1
    calls = lsf_simulator.calls("bsub")
    assert len(calls) == 20 and all(c.exit_code == 0 for c in calls)
    lsf_simulator.wait_idle(20)
    assert all(r["STAT"] == "DONE" for r in records(*ids))


# ----------------------------------------------------------------------------- hygiene


def job_processes(state_dir: Path) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
            status = Path(f"/proc/{name}/stat").read_bytes()
        except OSError:
            continue
        if status[status.rfind(b")") + 2 : status.rfind(b")") + 3] == b"Z":
            continue
        if f"LSFSIM_JOB_TOKEN={state_dir}:".encode() in environ:
            found.append(int(name))
    return found


def test_kill_everything_leaves_no_processes(tmp_path: Path) -> None:
    sim = install_simulator(tmp_path / "sim")
    env = {**os.environ, **sim.env}
    for script, opts in [("sleep 60 & sleep 60", []), ("sleep 60", ["-J", "a[1-3]"])]:
        result = run("bsub", *opts, stdin=script, env=env)
        assert result.returncode == 0, result.stderr
    wait_for(lambda: len(job_processes(sim.state_dir)) >= 5)
    sim.kill_everything()
    assert job_processes(sim.state_dir) == []
    assert sim.unfinished() == []


@pytest.mark.parametrize("plugin", ["cluster_api.testing", "cluster_api.testing.plugin"])
def test_users_can_load_the_fixture_with_dash_p(tmp_path: Path, plugin: str) -> None:
    (tmp_path / "test_user.py").write_text(
        "import subprocess\n"
        "def test_submit(lsf_simulator):\n"
        "    out = subprocess.run(['bsub'], input='true', capture_output=True, text=True)\n"
        "    assert out.stdout.startswith('Job <')\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", plugin, "test_user.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
