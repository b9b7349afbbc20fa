"""Generated input against the real app (fake embedders), in process: zero 5xx, every status documented
in the OpenAPI schema, every error body JSON.

Two generators: schemathesis, over every operation of the schema (valid and schema-violating
parameters and bodies, writes included), and hypothesis here, for what a schema does not describe:
wrong content types, malformed bodies, NaN/Infinity/1e999 in JSON, huge and odd-unicode strings.
``NITERU_FUZZ_EXAMPLES`` scales both (``make fuzz`` runs about 50,000 requests; CI at least 3,000).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from api.app import create_app
from niteru.catalog import CatalogRow
from niteru.settings import Settings
from tests.fakes import fake_embedders
from tests.fast_fixtures import photo, train_classifier

# Slow tier: a few minutes of generated requests run in CI (`make test`), not in `make test-fast`.
pytestmark = [pytest.mark.catalog, pytest.mark.slow]

# Examples per operation; about 15 operations, some with few distinct inputs.
EXAMPLES = int(os.environ.get("NITERU_FUZZ_EXAMPLES", "220"))
SENT: Counter[str] = Counter()


def fuzz_settings(catalog_dir: Path, data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        catalog_dir=catalog_dir,
        celery_broker_url="redis://127.0.0.1:1/0",
        metrics_broker_timeout=0.05,
        image_fetch_timeout=0.5,  # generated URLs point nowhere useful: fail fast
        jobs_executor="inline",
    )


def trained_app(catalog_dir: Path, data_dir: Path, rows: list[CatalogRow]) -> Any:
    """The app over a fresh store, with a classifier trained on the fake vectors (no 503 for it)."""
    s = fuzz_settings(catalog_dir, data_dir)
    embedders = fake_embedders(s)
    train_classifier(s, embedders, rows)
    return create_app(s, embedders=embedders)


@pytest.fixture(scope="module")
def api_schema(catalog_dir: Path, fast_rows: list[CatalogRow], tmp_path_factory: pytest.TempPathFactory) -> Any:
    app = trained_app(catalog_dir, tmp_path_factory.mktemp("fuzz"), fast_rows)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=EXAMPLES)
    return schema


def body_is_json(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every answer but a 204, a redirect, the image and the metrics is a JSON document."""
    if response.status_code in (204, 307) or (
        response.status_code == 200 and case.path.endswith(("/image", "/metrics"))
    ):
        return None
    json.loads(response.content)
    return None


def not_a_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    return None


def check_operation(operation: Any) -> None:
    """Valid and schema-violating input for one operation, under every check."""
    label = operation.label
    strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)

    @given(case=strategy)
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: Any) -> None:
        response = case.call()
        SENT[label] += 1
        checks = [not_a_server_error, status_code_conformance, content_type_conformance, body_is_json]
        case.validate_response(response, checks=checks)

    run()


def test_every_operation_with_generated_input(api_schema: Any) -> None:
    """Each operation of the schema in turn; the failures are gathered, then shown together."""
    failures: dict[str, str] = {}
    for result in api_schema.get_all_operations():
        operation = result.ok()
        try:
            check_operation(operation)
        except Exception as exc:  # every operation runs; the failures are reported together
            failures[operation.label] = f"{type(exc).__name__}: {str(exc)[:2000]}"
        outcome = "FAILED" if operation.label in failures else "ok"
        print(f"{operation.label}: {SENT[operation.label]} requests, {outcome}", flush=True)  # `make fuzz -s`
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())


CONTENT_TYPES = [
    "application/json",
    "text/plain",
    "multipart/form-data",
    "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded",
    "image/png",
    "",
    "application/json; charset=utf-16",
]
ODD = st.text(alphabet=st.characters(codec="utf-8"), max_size=50) | st.sampled_from(
    ["\u202e\u0000", "\ud7ff" * 3, "ｱ" * 5000, "a" * 300_000, " ", "\t", "é\u0301", "🧦" * 100]
)
NUMBERS = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e-999", "9" * 400, "-0", "0.0"])


@st.composite
def hostile_bodies(draw: st.DrawFn) -> bytes:
    """A JSON object with odd strings and extreme numbers, or bytes that are not JSON at all."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=2000))
    fields = draw(
        st.dictionaries(
            st.sampled_from(
                [
                    "shop_id",
                    "title",
                    "price",
                    "text",
                    "k",
                    "image_version",
                    "description",
                    "image_path",
                    "image_url",
                    "category",
                ]
            ),
            ODD.map(json.dumps) | NUMBERS,
            max_size=6,
        )
    )
    return ("{" + ",".join(f"{json.dumps(k)}: {v}" for k, v in fields.items()) + "}").encode()


ROUTES = [
    ("PUT", "/v1/products/fz-1"),
    ("PUT", "/v1/products/fz-1/image"),
    ("POST", "/v1/search/text"),
    ("POST", "/v1/search/image"),
    ("POST", "/v1/categorize"),
    ("POST", "/v1/tasks"),
]


@pytest.fixture(scope="module")
def client(
    catalog_dir: Path, fast_rows: list[CatalogRow], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    app = trained_app(catalog_dir, tmp_path_factory.mktemp("fuzz-raw"), fast_rows)
    with TestClient(app, raise_server_exceptions=False) as c:
        files = {"file": ("a.png", photo((200, 30, 30)), "image/png")}
        fields = {"shop_id": "s", "title": "Red cushion", "category": "home"}
        assert c.put("/v1/products/fz-1/image", files=files, data={"product": json.dumps(fields)}).status_code == 201
        yield c


@given(route=st.sampled_from(ROUTES), content_type=st.sampled_from(CONTENT_TYPES), raw=hostile_bodies())
@settings(max_examples=EXAMPLES * 3, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_malformed_bodies_and_wrong_content_types(
    client: TestClient, route: tuple[str, str], content_type: str, raw: bytes
) -> None:
    method, path = route
    r = client.request(method, path, content=raw, headers={"content-type": content_type} if content_type else {})
    SENT["raw"] += 1
    assert r.status_code < 500, r.text
    assert r.status_code in {200, 201, 202, 401, 404, 409, 413, 415, 422, 503}, (r.status_code, r.text)
    assert set(r.json()) >= ({"detail"} if r.status_code >= 400 else set())


def test_enough_requests_were_generated() -> None:
    if not SENT:
        pytest.skip("run with the generators above")
    print(f"generated requests: {sum(SENT.values())} {dict(SENT)}")
    assert sum(SENT.values()) >= min(3000, EXAMPLES * 13), SENT
