"""Request metrics are labelled by whole route templates, never by ids."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from farside_gateway.metrics import route_template


@pytest.mark.parametrize(
    ("path", "route", "expected"),
    [
        ("/api/v1/jobs/7", "/jobs/{job_id}", "/api/v1/jobs/{job_id}"),
        ("/api/v1/jobs", "/jobs", "/api/v1/jobs"),
        ("/api/v1/pilots/3/acquire", "/{pilot_id}/acquire", "/api/v1/pilots/{pilot_id}/acquire"),
        (
            "/clusters/a-1/static/x.js",
            "/clusters/{name}/{path:path}",
            "/clusters/{name}/{path:path}",
        ),
    ],
)
def test_templates_are_whole(path: str, route: str, expected: str) -> None:
    assert route_template({"path": path, "route": SimpleNamespace(path=route)}) == expected


def test_no_route_is_unmatched() -> None:
    assert route_template({"path": "/nowhere"}) == "unmatched"
