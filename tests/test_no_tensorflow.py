"""Serving processes run the image model on LiteRT: neither the API nor the worker code imports TensorFlow.

Checked in a fresh interpreter (this test process has TensorFlow loaded by other tests): it imports what
``niteru serve`` and the Celery worker import, starts the real app with the real image model, answers a
real photo search, and reports which TensorFlow or Keras modules ended up in ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.weights, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent

SERVE_A_PHOTO_SEARCH = """
import json, sys
from pathlib import Path

from fastapi.testclient import TestClient

import cli.main  # the `niteru` command, as `niteru serve` loads it
import jobs.celery_app, jobs.tasks  # what the Celery worker loads
from api.app import create_app
from niteru.settings import Settings
from niteru.store import open_store

settings = Settings(_env_file=None, data_dir=Path(sys.argv[1]))
with open_store(settings) as store:  # an empty collection: the search embeds the photo, then finds nothing
    store.ensure_collection({"image": 1024, "text": settings.text_reduced_dim})
photo = Path(sys.argv[2]).read_bytes()
with TestClient(create_app(settings)) as client:
    assert client.app.state.services.image is not None, client.app.state.services.problems
    answer = client.post("/v1/search/image", files={"file": ("q.jpg", photo, "image/jpeg")})
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
print(json.dumps({"status": answer.status_code, "body": answer.text[:300], "heavy": heavy}))
"""


def test_a_photo_search_loads_no_tensorflow(tmp_path: Path, catalog_dir: Path) -> None:
    photo = next((catalog_dir / "images").glob("*.jpg"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env = {k: v for k, v in env.items() if not k.startswith("NITERU_")}
    done = subprocess.run(
        [sys.executable, "-c", SERVE_A_PHOTO_SEARCH, str(tmp_path / "data"), str(photo)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["status"] == 200, report["body"]
    assert report["heavy"] == [], f"serving imported {report['heavy'][:10]}"
