"""The simulator's shared kit (``cluster_api.testing.simkit``) and the LSF pieces on it,
tested as plain functions on plain data; one test starts the launcher for real."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cluster_api.testing.lsfsim import bjobs, depend
from cluster_api.testing.lsfsim.bsub import LAUNCHER
from cluster_api.testing.simkit import cli, runner, store
from cluster_api.testing.simkit.depend import NEVER, SATISFIED, WAITING, evaluate
from cluster_api.testing.simkit.jobs import new_element


def element(stat: str, code: int | None = None) -> dict[str, Any]:
    record = new_element()
    record.update(stat=stat, exit_code=code)
    return record


def job(job_id: int, *stats: str, **fields: object) -> dict[str, Any]:
    array = {"indices": list(range(1, len(stats) + 1)), "limit": None} if len(stats) > 1 else None
    keys = [str(i) for i in range(1, len(stats) + 1)] if array else ["0"]
    record: dict[str, Any] = {
        "id": job_id,
        "name": f"j{job_id}",
        "user": "me",
        "array": array,
        "slots": 1,
        "elements": {k: element(s) for k, s in zip(keys, stats, strict=True)},
    }
    record.update(fields)
    return record


# ------------------------------------------------------------------ dependency bookkeeping


def test_evaluate_combines_conditions_over_what_the_resolver_designates() -> None:
    table = {"a": [element("DONE")], "b": [element("EXIT", 3)], "c": [element("RUN")]}

    def resolve(ref: dict[str, Any]) -> list[dict[str, Any]]:
        return table.get(ref["value"], [])

    def leaf(op: str, name: str, **extra: object) -> dict[str, object]:
        return {"op": op, "ref": {"value": name}, **extra}

    assert evaluate(leaf("done", "a"), resolve) == SATISFIED
    assert evaluate(leaf("done", "b"), resolve) == NEVER
    assert evaluate(leaf("done", "c"), resolve) == WAITING
    assert evaluate(leaf("done", "missing"), resolve) == WAITING
    assert evaluate(leaf("started", "c"), resolve) == SATISFIED
    assert evaluate(leaf("exit", "b", cmp=">", code=2), resolve) == SATISFIED
    assert evaluate(leaf("exit", "b", cmp="==", code=0), resolve) == NEVER
    both = {"op": "and", "args": [leaf("done", "a"), leaf("done", "b")]}
    assert evaluate(both, resolve) == NEVER
    either = {"op": "or", "args": [leaf("done", "b"), leaf("ended", "a")]}
    assert evaluate(either, resolve) == SATISFIED
    assert evaluate({"op": "not", "arg": leaf("done", "a")}, resolve) == WAITING


def test_lsf_dependency_expressions_parse_to_the_shared_tree() -> None:
    tree = depend.parse_dependency('done(1) && (ended("x*") || !exit(2, >1))')
    assert tree == {
        "op": "and",
        "args": [
            {"op": "done", "ref": {"kind": "id", "value": "1"}},
            {
                "op": "or",
                "args": [
                    {"op": "ended", "ref": {"kind": "name", "value": "x*"}},
                    {
                        "op": "not",
                        "arg": {
                            "op": "exit",
                            "ref": {"kind": "id", "value": "2"},
                            "cmp": ">",
                            "code": 1,
                        },
                    },
                ],
            },
        ],
    }
    assert depend.parse_dependency("7[2]") == {
        "op": "done",
        "ref": {"kind": "id", "value": "7[2]"},
    }


@pytest.mark.parametrize("text", ["", "done(", "done(1", "ended(1, 3)", "foo(1)", "1 &&", "(1"])
def test_bad_lsf_dependency_expressions_are_refused(text: str) -> None:
    with pytest.raises(depend.DependencyError):
        depend.parse_dependency(text)


# ------------------------------------------------------------------ scheduling


def test_plan_start_honours_array_limit_slots_and_orphans() -> None:
    settings = {"slots": 3, "clean_period": 3600}
    state = {
        "jobs": {
            "1": job(1, "RUN", "RUN"),
            "2": job(2, "PEND", "PEND", "PEND", array_limit=None),
            "3": job(3, "PEND", ti=True),
        }
    }
    state["jobs"]["2"]["array"]["limit"] = 2
    changed, starting = runner.plan_start(state, "2", None, {}, settings)
    assert (changed, starting) == (True, ["1"])  # 2 slots used by job 1, 1 left
    never = runner.Dependency(check=lambda *_: NEVER, per_element=False)
    changed, starting = runner.plan_start(state, "3", never, {}, settings)
    orphan = state["jobs"]["3"]["elements"]["0"]
    assert (changed, starting) == (True, [])
    assert (orphan["stat"], orphan["exit_reason"]) == ("EXIT", "TERM_ORPHAN_SYSTEM")


# ------------------------------------------------------------------ bjobs pieces


def test_bjobs_selection_and_fields_on_plain_records() -> None:
    record = job(5, "DONE", "EXIT", "PEND", queue="normal", from_host="h", submit_cwd="/w")
    record["elements"]["2"]["exit_code"] = 4
    state = {"jobs": {"5": record}}
    request = bjobs.BjobsRequest(user="me", ids=["5", "6"], fmt_text=None)
    rows, errors = bjobs.select_rows(request, state, {"max_array_size": 10, "clean_period": 1}, 0)
    assert [idx for _, idx, _ in rows] == ["3"]  # finished elements hidden without -a
    assert errors == [("6", "Job <6> is not found")]
    values = [
        bjobs.field_value(f, None, record, "2", record["elements"]["2"], {}, 0)
        for f in ("jobid", "jobindex", "stat", "exit_code", "job_name")
    ]
    assert values == ["5", "2", "EXIT", "4", "j5[2]"]


# ------------------------------------------------------------------ a second scheduler


def test_a_toy_scheduler_reuses_the_entry_point_call_log_and_faults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def qstat(args: list[str], state_dir: str, control: store.Json) -> int:
        sys.stdout.write(f"qstat {' '.join(args)} {control['settings']['answer']}\n")
        return 0

    toy = cli.Scheduler(
        program="toysim",
        env_state_dir="TOYSIM_DIR",
        commands={"qstat": qstat},
        defaults={"answer": 42},
        outage_message="Server down",
        is_token_lookup=lambda command, args: False,
        run_job=lambda args, state_dir: 0,
    )
    monkeypatch.setenv("TOYSIM_DIR", str(tmp_path))
    assert cli.main(toy, ["qstat", "-x"]) == 0
    assert capsys.readouterr().out == "qstat -x 42\n"
    store.save_control(str(tmp_path), {"faults": {"outage_until": 4e9}})
    assert cli.main(toy, ["qstat"]) == 255
    assert capsys.readouterr().err == "Server down\n"
    assert cli.main(toy, ["qdel"]) == 2
    assert capsys.readouterr().err == "usage: toysim.py {qstat} [args...]\n"
    log = [json.loads(line) for line in (tmp_path / store.CALLS_FILE).read_text().splitlines()]
    assert [(r["event"], r.get("argv"), r.get("exit_code")) for r in log] == [
        ("start", ["-x"], None),
        ("end", None, 0),
        ("start", [], None),
        ("end", None, 255),
    ]


# ------------------------------------------------------------------ start-up


@pytest.mark.integration
def test_the_launcher_imports_no_cluster_api_and_only_the_command_it_runs(tmp_path: Path) -> None:
    """Commands run thousands of times: they must not pay for yaml, orjson, asyncio."""
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-X", "importtime", LAUNCHER, "bjobs", "-h"],
        capture_output=True,
        text=True,
        env={"CLUSTER_API_LSFSIM_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Usage: bjobs" in result.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()]
    assert "_clusterapi_sim.lsfsim.bjobs" in imported
    assert "_clusterapi_sim.lsfsim.bsub" not in imported  # each command loads its own module
    assert not [
        m for m in imported if m.split(".")[0] in ("cluster_api", "yaml", "orjson", "asyncio")
    ]
