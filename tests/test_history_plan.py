"""Which ends the engine asks a job history for (`cluster_api.history.history_queries`),
the same for every scheduler, and how Slurm translates that question into sacct ids and
its answer back; and the `Scheduler` defaults Slurm's translation leans on (header from
options, parse_submit from a pattern, require_success). Plain data, no processes."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from cluster_api import (
    ClusterAPIError,
    ClusterConfig,
    JobRecord,
    JobStatus,
    ResourceSpec,
    SubmitError,
)
from cluster_api.executors.slurm_formats import finals_from_sacct, sacct_ids
from cluster_api.history import HistoryQuery, history_queries, untold_ends
from cluster_api.jobspec import JobSpec
from cluster_api.models import ArrayElement
from cluster_api.scheduler import CommandAnswer, Scheduler
from cluster_api.status import Observation, QueryResult

DONE, FAILED, RUNNING, PENDING = (
    JobStatus.DONE,
    JobStatus.FAILED,
    JobStatus.RUNNING,
    JobStatus.PENDING,
)
MONDAY = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)


def plain(job_id: str, submitted: datetime | None = MONDAY) -> JobRecord:
    return JobRecord(job_id=job_id, name="j", command="true", submit_time=submitted)


def array(job_id: str, **statuses: JobStatus) -> JobRecord:
    """An array whose elements (``e1=RUNNING``: index 1) stand as given."""
    record = plain(job_id)
    record.metadata["array_range"] = (1, len(statuses))
    for name, status in statuses.items():
        index = int(name[1:])
        record.array_elements[index] = ArrayElement(index=index, status=status)
    return record


def test_a_lost_plain_job_is_asked_for_its_end() -> None:
    result = QueryResult(not_found={"5"})
    (query,) = history_queries([plain("5")], result, None)
    assert query == HistoryQuery(keys=[("5", None)], lost=frozenset({"5"}), since=MONDAY)


def test_a_lost_array_is_asked_for_each_unfinished_element() -> None:
    record = array("13", e1=DONE, e2=RUNNING, e3=RUNNING, e4=PENDING)
    (query,) = history_queries([record], QueryResult(not_found={"13"}), None)
    assert query.keys == [("13", 2), ("13", 3), ("13", 4)]  # element 1 had ended
    assert query.lost == {"13"}
    assert query.job_ids == ["13"]


def test_an_element_that_ended_without_an_exit_code_is_asked_for() -> None:
    record = array("14", e1=RUNNING, e2=RUNNING, e3=RUNNING)
    listed = {1: Observation(DONE, 0), 2: Observation(FAILED), 3: Observation(RUNNING)}
    result = QueryResult(elements={"14": listed})
    assert untold_ends(record, result) == [("14", 2)]
    (query,) = history_queries([record], result, None)
    assert query.lost == frozenset()  # the array is still listed: not asked whole


def test_an_element_gone_while_its_array_is_listed_is_asked_for() -> None:
    record = array("14", e1=RUNNING, e2=DONE, e3=RUNNING)
    result = QueryResult(elements={"14": {3: Observation(RUNNING)}})
    # element 1 left the listing unfinished; element 2 had already ended
    assert untold_ends(record, result) == [("14", 1)]


def test_a_job_that_ended_with_its_code_is_not_asked_about() -> None:
    failed, done, running = plain("1"), plain("2"), plain("3")
    result = QueryResult(
        jobs={"1": Observation(FAILED, 3), "2": Observation(DONE, 0), "3": Observation(RUNNING)}
    )
    assert history_queries([failed, done, running], result, None) == []


def test_a_job_the_answer_did_not_mention_is_not_asked_about() -> None:
    """Not mentioned is not "unknown": only the scheduler's not_found is lost."""
    assert history_queries([plain("9")], QueryResult(), None) == []


def test_an_end_without_exit_code_is_asked_for() -> None:
    result = QueryResult(jobs={"1": Observation(FAILED)})
    (query,) = history_queries([plain("1")], result, None)
    assert (query.keys, query.lost) == ([("1", None)], frozenset())


def test_since_is_the_oldest_submission_or_none_when_one_is_unknown() -> None:
    older = plain("1", MONDAY.replace(day=20))
    result = QueryResult(not_found={"1", "2", "3"})
    (query,) = history_queries([older, plain("2")], result, None)
    assert query.since == MONDAY.replace(day=20)
    (query,) = history_queries([older, plain("3", submitted=None)], result, None)
    assert query.since is None


def test_queries_hold_at_most_history_ids_per_call_jobs() -> None:
    records = [plain("1"), plain("2"), array("3", e1=RUNNING, e2=RUNNING)]
    result = QueryResult(not_found={"1", "2", "3"})
    queries = history_queries(records, result, 1)
    assert [q.job_ids for q in queries] == [["1"], ["2"], ["3"]]
    assert queries[2].keys == [("3", 1), ("3", 2)]
    (whole,) = history_queries(records, result, None)
    assert whole.job_ids == ["1", "2", "3"]


# -- Slurm's translation -----------------------------------------------------------------
ELEMENT_IDS = {"19": ("14", 1), "21": ("14", 3), "30": ("20", 1)}


def test_slurm_asks_sacct_for_a_lost_arrays_id_and_its_elements_own_ids() -> None:
    query = HistoryQuery(
        keys=[("14", 1), ("14", 2), ("14", 3), ("7", None)], lost=frozenset({"14"})
    )
    assert sacct_ids(query, ELEMENT_IDS) == ["7", "14", "19", "21"]


def test_slurm_asks_only_the_own_ids_of_a_listed_arrays_elements() -> None:
    query = HistoryQuery(keys=[("14", 3), ("20", 1)])  # neither array is lost
    assert sacct_ids(query, ELEMENT_IDS) == ["21", "30"]


def test_slurm_leaves_out_ids_sacct_would_refuse() -> None:
    query = HistoryQuery(keys=[("-a", None), ("8", None)], lost=frozenset({"-a", "8"}))
    assert sacct_ids(query, {}) == ["8"]


def test_sacct_lines_are_read_back_onto_the_keys_asked_for() -> None:
    query = HistoryQuery(keys=[("14", 1), ("14", 3), ("7", None)], lost=frozenset({"14", "7"}))
    stdout = "".join(
        f"{line}\n"
        for line in (
            "19|14_1|COMPLETED|0:0|n1||N/A|N/A",  # slurmdbd: the element by its array id
            "21|21|FAILED|2:0|n1||N/A|N/A",  # sacct -c: by its own id alone
            "21.batch|21.batch|FAILED|2:0|n1|4096K|N/A|N/A",
            "7|7|FAILED|1:0|n2||N/A|N/A",
            "14|14|FAILED|1:0|n2||N/A|N/A",  # whichever element took id 14: not known
            "99|99|FAILED|1:0|n2||N/A|N/A",  # not asked about
        )
    )
    finals = finals_from_sacct(stdout, query, ELEMENT_IDS)
    assert {key: (obs.status, obs.exit_code) for key, obs in finals.items()} == {
        ("14", 1): (DONE, 0),
        ("14", 3): (FAILED, 2),
        ("7", None): (FAILED, 1),
    }
    assert finals[("14", 3)].max_mem == "4096K"


# -- the scheduler defaults Slurm's translation leans on ---------------------------------
class _Plain(Scheduler):
    """A scheduler giving only directive options and the pattern of its submit answer."""

    name = "plain"
    directive_prefix = "#PL"
    submitted_pattern = re.compile(r"^job (\d+) queued$")

    def options(self, spec: JobSpec) -> list[str]:
        return [f"--name={spec.name}", "--mail=none"]


def test_the_default_header_writes_options_minus_skipped_then_extra_directives() -> None:
    config = ClusterConfig(directives_skip=["--mail"], extra_directives=["#PL --site-rule"])
    spec = JobSpec("true", "j1", ResourceSpec(), [], [], {}, {}, True, False, [])
    assert _Plain(config).header(spec) == ["#PL --name=j1", "#PL --site-rule"]


def test_the_default_parse_submit_reads_the_last_line_matching_the_pattern() -> None:
    plain = _Plain(ClusterConfig())
    assert plain.parse_submit("notice: job 1 queued later\njob 42 queued\n") == "42"
    with pytest.raises(SubmitError, match="plain submit did not report a job id"):
        plain.parse_submit("queue full\n")


def test_require_success_raises_the_commands_own_failure() -> None:
    failure = ClusterAPIError("squeue exited 1")
    CommandAnswer(["1"], "1|RUNNING\n").require_success("squeue")  # succeeded: nothing
    with pytest.raises(ClusterAPIError) as raised:
        CommandAnswer(["1"], "", "boom", failed=True, error=failure).require_success("squeue")
    assert raised.value is failure
    with pytest.raises(ClusterAPIError, match="squeue failed: 'boom'"):
        CommandAnswer(["1"], "", "boom", failed=True).require_success("squeue")
