"""The hardening issue's fourteen items, by number, with the tests that prove each.

Every item was reproduced on the code before the fix, and each test named here failed
there. This file keeps the list honest: a test renamed or removed without updating the
list fails here, and so does an item left without a test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

HERE = Path(__file__).parent

# item -> (test file, test function), the unit test first where there is one.
HARDENING: dict[int, list[tuple[str, str]]] = {
    # 1. no shell reads a path or value unquoted (LSF's bsub line, -cwd/-o/-e, Slurm, local)
    1: [
        ("test_hardening_security.py", "test_lsf_script_path_is_one_shell_word"),
        ("test_hardening_security_integration.py", "test_lsf_hostile_folders"),
        ("test_hardening_security_integration.py", "test_slurm_hostile_folders"),
        ("test_hardening_security_integration.py", "test_local_hostile_folders"),
        ("test_hardening_security_integration.py", "test_env_values_reach_the_job_literally"),
    ],
    # 2. env keys match in full; non-UTF-8 text refused before anything is written
    2: [
        ("test_hardening_security.py", "test_env_key_must_match_fully"),
        ("test_hardening_security.py", "test_non_utf8_text_is_refused_before_anything_is_written"),
        (
            "test_hardening_security.py",
            "test_write_script_refuses_non_utf8_content_without_leaving_a_file",
        ),
    ],
    # 3. a failed lookup after a lost submit answer is not "not found"
    3: [
        (
            "test_hardening_submit.py",
            "test_lsf_lookup_failures_are_retried_instead_of_resubmitting",
        ),
        (
            "test_hardening_submit.py",
            "test_slurm_lookup_failures_are_retried_instead_of_resubmitting",
        ),
        (
            "test_hardening_submit_integration.py",
            "test_failed_lookups_after_a_lost_answer_still_submit_once",
        ),
    ],
    # 4. a process killed mid-submit loses no job: intents are journalled first
    4: [
        ("test_hardening_submit.py", "test_killed_mid_submit_the_job_comes_back_with_its_true_end"),
        (
            "test_hardening_submit_integration.py",
            "test_process_killed_mid_submit_loses_and_duplicates_no_job",
        ),
    ],
    # 5. journal trouble is raised, naming the file
    5: [
        (
            "test_hardening_submit.py",
            "test_unwritable_journal_stops_submit_before_the_scheduler_sees_it",
        ),
        ("test_hardening_submit.py", "test_unwritable_journal_during_polls_is_logged"),
        ("test_hardening_submit.py", "test_corrupt_journal_is_a_cluster_api_error_naming_the_file"),
    ],
    # 6. local job ids are unique across processes (they are PIDs)
    6: [("test_local_supervisor.py", "test_ids_stay_unique_when_two_processes_submit_at_once")],
    # 7. local work still waiting when its submitter exited is not stranded
    7: [
        (
            "test_local_supervisor.py",
            "test_reconnect_finds_pending_work_started_by_a_process_that_exited",
        ),
        ("test_local_supervisor.py", "test_dependant_of_a_failed_job_is_killed_without_a_monitor"),
    ],
    # 8. KILLED only for what the scheduler actually killed
    8: [
        ("test_hardening_endings.py", "test_job_that_exited_before_its_cancel_keeps_its_exit"),
        ("test_hardening_endings.py", "test_cancel_all_kills_only_the_jobs_bkill_accepted"),
        (
            "test_hardening_endings_integration.py",
            "test_lsf_cancel_all_kills_only_what_was_still_running",
        ),
        (
            "test_hardening_endings_integration.py",
            "test_slurm_cancel_all_kills_only_what_was_still_running",
        ),
        ("test_local_supervisor.py", "test_a_job_that_ended_before_the_cancel_keeps_its_failure"),
    ],
    # 9. an admin kill seen only through the exit file ends KILLED (history is asked first)
    9: [
        ("test_hardening_endings.py", "test_job_killed_by_an_admin_during_an_outage_ends_killed"),
        (
            "test_hardening_endings_integration.py",
            "test_lsf_admin_kill_while_lsf_was_down_ends_killed",
        ),
    ],
    # 10. malformed records are logged and skipped; they never end an array or stop a poll
    10: [
        ("test_hardening_endings.py", "test_record_without_an_index_does_not_end_an_array"),
        ("test_hardening_endings.py", "test_lsf_elements_outside_the_range_do_not_count"),
        ("test_hardening_endings.py", "test_slurm_elements_outside_the_range_do_not_count"),
        (
            "test_hardening_endings.py",
            "test_slurm_row_with_an_impossible_time_does_not_stop_the_poll",
        ),
        ("test_hardening_endings.py", "test_slurm_ids_that_only_look_like_digits_are_skipped"),
        ("test_hardening_endings.py", "test_lsf_ids_that_only_look_like_digits_are_not_adopted"),
        ("test_hardening_endings.py", "test_fuzzed_bjobs_records_never_end_an_array_early"),
        ("test_hardening_endings.py", "test_fuzzed_squeue_rows_never_end_an_array_early"),
    ],
    # 11. a work_dir that is a regular file is refused at once (no spin)
    11: [("test_hardening_security.py", "test_work_dir_that_is_a_file_is_refused_at_once")],
    # 12. late callbacks on an ended (even purged) record fire; wait_for returns at once
    12: [
        ("test_hardening_monitor.py", "test_callback_registered_on_a_purged_record_fires_at_once"),
        (
            "test_hardening_monitor.py",
            "test_wait_for_an_ended_record_returns_without_waiting_for_a_poll",
        ),
    ],
    # 13. the docs say what is true of sync callbacks; stop() from a callback is refused
    13: [
        (
            "test_hardening_monitor.py",
            "test_sync_callback_runs_on_the_loop_and_a_slow_one_is_reported",
        ),
        ("test_hardening_monitor.py", "test_stop_awaited_from_a_callback_is_refused_at_once"),
    ],
    # 14. outage backoff capped near the poll interval; a good command ends it early
    14: [
        ("test_hardening_monitor.py", "test_outage_backoff_is_capped_near_the_poll_interval"),
        (
            "test_hardening_monitor.py",
            "test_command_that_succeeds_during_an_outage_wakes_the_monitor",
        ),
    ],
}


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.name.startswith("test_")
    }


def test_every_item_has_tests() -> None:
    assert sorted(HARDENING) == list(range(1, 15))
    assert all(HARDENING.values())


@pytest.mark.parametrize("item", sorted(HARDENING))
def test_listed_tests_exist(item: int) -> None:
    missing = [
        f"{file}::{name}"
        for file, name in HARDENING[item]
        if name not in _test_functions(HERE / file)
    ]
    assert not missing, f"item {item}: no such test {missing}"
