"""Property tests: scheduler output parsing never crashes, rendering never injects lines."""

from __future__ import annotations

import contextlib
import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cluster_api.executors.lsf_formats as lsf_formats
import cluster_api.jsontext as jsontext
from cluster_api import ClusterConfig, LSFExecutor, ResourceSpec
from cluster_api.errors import ClusterAPIError
from cluster_api.executors.lsf_formats import (
    parse_bhist_long,
    parse_bjobs_json,
    query_result_from_records,
)
from cluster_api.script import compose_script, environment_lines

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
field_names = st.sampled_from([*lsf_formats._FIELDS, "ERROR", "JOB_NAME"])
records = st.lists(
    st.dictionaries(field_names, json_values | st.text(max_size=30), max_size=12)
    # every field present: the path most answers take
    | st.fixed_dictionaries(
        {
            **{k: json_values | st.text(max_size=30) for k in lsf_formats._FIELDS},
            "JOBID": st.sampled_from(["101", "102[3]"]) | json_values,
            "STAT": st.sampled_from(list(lsf_formats._STATUS)) | json_values,
        }
    ),
    max_size=6,
)


def parse_all(text: str) -> None:
    with contextlib.suppress(ClusterAPIError):
        query_result_from_records(parse_bjobs_json(text))


@given(st.binary(max_size=400))
def test_bjobs_parser_survives_arbitrary_bytes(data: bytes) -> None:
    parse_all(data.decode("utf-8", errors="replace"))


@given(json_values)
def test_bjobs_parser_survives_arbitrary_json(value: object) -> None:
    parse_all(json.dumps(value))


@given(records, st.text(max_size=40))
def test_bjobs_parser_survives_arbitrary_records(
    recs: list[dict[str, object]], banner: str
) -> None:
    text = banner.replace("{", "") + json.dumps(
        {"COMMAND": "bjobs", "JOBS": len(recs), "RECORDS": recs}
    )
    result = query_result_from_records(parse_bjobs_json(text))
    for job_id in [*result.jobs, *result.elements, *result.not_found]:
        assert isinstance(job_id, str)


@pytest.mark.skipif(jsontext.orjson is None, reason="orjson is not installed")
@given(records, st.text(max_size=10))
def test_orjson_and_the_standard_library_read_answers_alike(
    recs: list[dict[str, object]], trailer: str
) -> None:
    text = json.dumps({"COMMAND": "bjobs", "JOBS": len(recs), "RECORDS": recs}) + trailer

    def read() -> object:
        try:
            return query_result_from_records(parse_bjobs_json(text))
        except ClusterAPIError as exc:
            return str(exc)

    fast = read()
    orjson, jsontext.orjson = jsontext.orjson, None
    try:
        assert read() == fast
    finally:
        jsontext.orjson = orjson


@given(st.text(max_size=300))
def test_bhist_parser_survives_arbitrary_text(text: str) -> None:
    for key, obs in parse_bhist_long(text).items():
        assert obs.status.is_terminal and key


unsafe_text = st.text(alphabet=string.printable + "\u2028\x00\x85é#", max_size=30)


def directive_lines(script: str) -> list[str]:
    # Shells and LSF split lines on "\n" only (str.splitlines would also split on U+0085).
    return [line for line in script.split("\n") if line.lstrip().startswith("#BSUB")]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=150)
@given(name=unsafe_text, env_value=unsafe_text, queue=unsafe_text)
def test_no_user_value_adds_a_line_or_directive(
    tmp_path: object, name: str, env_value: str, queue: str
) -> None:
    executor = LSFExecutor(ClusterConfig(executor="lsf"))
    baseline = executor.build_header("job", ResourceSpec(work_dir="/w", queue="q"))
    try:
        header = executor.build_header(name, ResourceSpec(work_dir="/w", queue=queue))
    except ValueError:
        return  # refused before anything is written: fine
    assert len(header) <= len(baseline)
    env_lines = environment_lines({"VALUE": env_value}) if "\x00" not in env_value else []
    script = compose_script(ClusterConfig(), "true", header, preamble=env_lines)
    assert "\r" not in script
    assert script.count("\n") == 1 + len(header) + len(env_lines) + 1
    assert len(directive_lines(script)) == len(header)


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x00b"])
def test_control_characters_in_fields_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        ResourceSpec(queue=bad)
