"""Fuzzing the API against its own OpenAPI schema (schemathesis, in process): no request, valid
or not, gets a 5xx, an undocumented status or a body that does not match the schema.

Every operation gets schema-valid cases, cases that break the schema (where it has inputs) and
the schema's examples, with the admin key so the write routes run too, on a private copy of a
60-item index. Bounded: a fixed number of cases per operation, derandomized, no shrinking.
"""

from __future__ import annotations

import shutil
import sys
import time

import pytest

if sys.version_info < (3, 11):
    pytest.skip("schemathesis needs Python 3.11+", allow_module_level=True)

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from serve.conftest import ADMIN
from stylefinder.engine import Engine
from stylefinder.index.store import IndexStore
from stylefinder.serve.api import create_app
from stylefinder.serve.settings import ServerSettings

CASES_PER_OPERATION = 50
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]


@pytest.fixture
def fuzzed_app(recognized_index, embedder, tmp_path):
    """The API over a private copy of the 60-item recognized index, writes enabled."""
    target = tmp_path / "index"
    shutil.copytree(recognized_index, target)
    engine = Engine(IndexStore.open(target), embedder=embedder)
    return create_app(ServerSettings(index_dir=str(target), admin_key=ADMIN), engine=engine)


def _cases(operation, item_id: str):
    """Valid cases, schema-breaking ones where there is something to break, the examples, and
    for item routes valid cases on a real item (random ids are all unknown)."""
    strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
    if "{item_id}" in operation.path:
        known = {"item_id": item_id}
        strategies.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=known))
    definition = operation.definition.raw
    if definition.get("parameters") or definition.get("requestBody"):
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
    strategies.extend(operation.get_strategies_from_examples())
    return st.one_of(strategies)


def _fuzz(operation, item_id: str, statuses: dict[str, set[int]]) -> None:
    """Send `CASES_PER_OPERATION` cases to one operation; raises on the first failed check."""

    @given(case=_cases(operation, item_id))
    @settings(
        max_examples=CASES_PER_OPERATION,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case) -> None:
        response = case.call_and_validate(headers={"X-API-Key": ADMIN}, checks=CHECKS)
        statuses.setdefault(operation.label, set()).add(response.status_code)

    fuzz()


def test_no_request_breaks_the_api_or_its_schema(fuzzed_app, report):
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    item_id = next(iter(fuzzed_app.state.engine.snapshot.row_of))
    failures, statuses = [], {}
    started = time.perf_counter()
    for operation in operations:
        try:
            _fuzz(operation, item_id, statuses)
        except (Exception, FailureGroup) as exc:  # one entry per broken operation, then fail
            failures.append(f"{operation.label}: {exc}")
    seconds = time.perf_counter() - started
    report("API fuzzing", f"{len(operations)} operations in {seconds:.1f} s")
    assert not failures, "\n\n".join(failures)
    answered = set().union(*statuses.values())
    assert {200, 201, 404, 422} <= answered  # the fuzzing reached real answers, not only 4xx
