"""Schemathesis fuzzes every operation of /openapi.json against the ASGI app: never a 5xx, and
responses conform to the documented models. In-process (no network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from support.server import SAFE, SampleLibrary

from clipcrop_plugin.server import create_app

MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def api_schema(shared_sample: SampleLibrary, tmp_path_factory: pytest.TempPathFactory):
    # The fuzzer's client sends Host "testserver"; allow it (and loopback) so requests reach the routes.
    app = create_app(shared_sample.library, allowed_hosts=["testserver", "127.0.0.1", "localhost"],
                     thumbnail_dir=tmp_path_factory.mktemp("thumbs"))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _fuzz(schema: Any, mode: GenerationMode) -> int:
    """Run ``MAX_EXAMPLES`` generated requests per operation; return how many were sent."""
    sent = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case) -> None:
            nonlocal sent
            # X-Clipcrop lets state-changing calls past the CSRF guard so their handlers get fuzzed too.
            response = case.call(headers=SAFE)
            sent += 1
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} {case.query} {case.body!r}: "
                f"{response.status_code} {response.text[:300]}")
            if mode is GenerationMode.POSITIVE and response.status_code < 400:
                case.validate_response(response)

        try:
            run()
        except Unsatisfiable:
            # No parameters and no body (GET /api/info): there is nothing to make invalid.
            assert mode is GenerationMode.NEGATIVE, operation.label
    return sent


def test_valid_requests_never_fail_and_match_the_documented_models(api_schema: Any) -> None:
    assert _fuzz(api_schema, GenerationMode.POSITIVE) >= 10


def test_invalid_requests_are_refused_without_server_errors(api_schema: Any) -> None:
    assert _fuzz(api_schema, GenerationMode.NEGATIVE) >= 10


def test_schema_is_complete(shared_sample: SampleLibrary, tmp_path: Path) -> None:
    app = create_app(shared_sample.library, thumbnail_dir=tmp_path)
    spec = app.openapi()
    models = spec["components"]["schemas"]
    for name in ("PhotoPageOut", "PhotoDetailOut", "CropOut", "LabelOut", "LabelRequest", "MetadataResult", "DaemonStatus"):
        assert name in models
    ops = {(m.upper(), p) for p, item in spec["paths"].items() for m in item}
    one = "/api/photos/{photo_id}"
    assert ops == {("GET", "/api/info"), ("GET", "/api/photos"), ("GET", one), ("GET", one + "/thumbnail"),
                   ("POST", one + "/score"), ("GET", one + "/labels"), ("POST", one + "/labels"),
                   ("POST", one + "/metadata"), ("DELETE", one + "/metadata"), ("GET", "/api/status")}
