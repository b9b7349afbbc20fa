"""compose.yaml and docker/Dockerfile against the code, without a Docker engine.

No engine runs here, so nothing is built or started. What can be checked is checked: the file parses (and
Compose itself validates it when a Compose binary is installed; .ci/run installs Debian's); every
``NITERU_*`` variable is a settings field with a valid value; every command parses with the real CLI
(Typer's for ``niteru``, Celery's for ``celery -A ...``); ports, URLs and volumes agree with each other
and with the settings; the start order waits on real health checks; the image is multi-stage, non-root,
healthchecked and installed by the same ``scripts/setup.sh`` as the Makefile. Each check returns the
problems it finds, and the tests at the end feed it broken copies to show that it does find them.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import typer
import uvicorn
import yaml
from celery import Celery
from celery.bin.base import CLIContext
from celery.bin.celery import celery as celery_cli
from fastapi import FastAPI
from pydantic import ValidationError

from api.routers.health import router as health_router
from cli.main import app as niteru_app
from niteru.settings import Settings
from tests.conftest import REPO

COMPOSE = REPO / "compose.yaml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
NITERU_SERVICES = ("api", "worker", "beat", "ingest")  # the services that run the niteru image
QDRANT_HTTP_PORT = 6333  # the qdrant/qdrant image's REST port
REDIS_PORT = 6379  # the redis image's port

Compose = dict[str, Any]


def load_compose() -> Compose:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the KEY=value list form
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def settings_from(env: dict[str, str]) -> Settings:
    """The settings a container gets: the image's ENV, then the service's environment, read the way the
    container reads them (from the process environment, JSON for lists; no .env file, the image has none).
    The test process's own NITERU_* variables are set aside meanwhile."""
    saved = dict(os.environ)
    try:
        for name in [k for k in os.environ if k.startswith("NITERU_")]:
            del os.environ[name]
        os.environ.update({**image_env(), **env})
        return Settings(_env_file=None)
    finally:
        os.environ.clear()
        os.environ.update(saved)


# --- the Dockerfile --------------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments and the parser directive dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def env_assignments(args: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in shlex.split(args))


def runtime_env(text: str) -> dict[str, str]:
    """The ENV of the Dockerfile's last stage, the one that runs."""
    instructions = dockerfile_instructions(text)
    last = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    env: dict[str, str] = {}
    for keyword, args in instructions[last:]:
        if keyword == "ENV":
            env.update(env_assignments(args))
    return env


def image_env() -> dict[str, str]:
    return {k: v for k, v in runtime_env(DOCKERFILE.read_text()).items() if k.startswith("NITERU_")}


def check_dockerfile(text: str, repo: Path) -> list[str]:
    problems: list[str] = []
    instructions = dockerfile_instructions(text)
    stages = [args for keyword, args in instructions if keyword == "FROM"]
    if len(stages) < 2:
        problems.append("not multi-stage: the build tools would stay in the image")
    runtime = instructions[max(i for i, (k, _) in enumerate(instructions) if k == "FROM") :]
    fields = set(Settings.model_fields)
    for keyword, args in instructions:
        if keyword == "COPY" and "--from=" not in args:
            parts = [p for p in shlex.split(args) if not p.startswith("--")]
            for source in parts[:-1]:
                if not (repo / source).exists():
                    problems.append(f"COPY source {source} does not exist")
        if keyword == "ENV":
            for name in env_assignments(args):
                if name.startswith("NITERU_") and name.removeprefix("NITERU_").lower() not in fields:
                    problems.append(f"ENV {name} is not a settings field")
    # A package pyproject.toml installs but the image does not copy would be missing only in the image.
    copied = {
        Path(source).parts[0]
        for keyword, args in instructions
        if keyword == "COPY" and "--from=" not in args
        for source in [p for p in shlex.split(args) if not p.startswith("--")][:-1]
    }
    pyproject = tomllib.loads((repo / "pyproject.toml").read_text())
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*").rstrip(".")
        if "." not in package and package not in copied:
            problems.append(f"package {package} (pyproject.toml) is not copied into the image")
    runs = [args for keyword, args in instructions if keyword == "RUN"]
    if not any(re.search(r"(^|\s)scripts/setup\.sh(\s|$)", run) for run in runs):
        problems.append("no RUN of scripts/setup.sh: the image would install differently from the Makefile")
    if not any(re.search(r"NITERU_EXTRAS=(\s|$)", run) for run in runs):
        problems.append("setup.sh is not told NITERU_EXTRAS= (empty): dev tools and experiments go into the image")
    users = [args for keyword, args in runtime if keyword == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the runtime stage runs as root")
    env = runtime_env(text)
    if "KERAS_HOME" not in env:
        problems.append("the runtime stage does not set KERAS_HOME: Keras would look for the weights in ~/.keras")
    healthchecks = [args for keyword, args in runtime if keyword == "HEALTHCHECK"]
    if not healthchecks or healthchecks[-1].upper() == "NONE":
        problems.append("no HEALTHCHECK in the runtime stage")
    exposed = {p.split("/")[0] for keyword, args in runtime if keyword == "EXPOSE" for p in args.split()}
    port = env.get("NITERU_API_PORT", str(Settings.model_fields["api_port"].default))
    if port not in exposed:
        problems.append(f"the API port {port} is not EXPOSEd (EXPOSE {sorted(exposed)})")
    return problems


# --- compose.yaml ----------------------------------------------------------------------------------------


def check_environment(compose: Compose) -> list[str]:
    problems: list[str] = []
    fields = set(Settings.model_fields)
    for name, service in compose["services"].items():
        env = env_of(service)
        unknown = [k for k in env if k.startswith("NITERU_") and k.removeprefix("NITERU_").lower() not in fields]
        problems += [f"{name}: {k} is not a settings field" for k in unknown]
        if not unknown and env:
            try:
                settings_from(env)
            except ValidationError as exc:
                problems.append(f"{name}: invalid settings value: {exc}")
    return problems


def niteru_problems(argv: list[str]) -> list[str]:
    """Parse ``niteru ...`` with the real Typer app: unknown commands or options, bad values are problems.

    Only parsed (``make_context``), never invoked. Typer carries its own copy of Click, whose usage errors
    are not ``click.UsageError``: anything parsing raises is the problem.
    """
    group = typer.main.get_command(niteru_app)
    assert isinstance(group, typer.core.TyperGroup)
    try:
        ctx = group.make_context("niteru", argv[:1])
        command = group.get_command(ctx, argv[0]) if argv else None
        if command is None:
            return [f"niteru has no command {argv[:1]}"]
        command.make_context(argv[0], list(argv[1:]), parent=ctx)
    except Exception as exc:
        return [f"niteru {shlex.join(argv)}: {type(exc).__name__}: {exc}"]
    return []


def celery_params(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse ``celery -A module sub ...`` with Celery's own CLI, against the app the module really builds."""
    if argv[:1] != ["-A"] or len(argv) < 3:
        raise click.UsageError(f"expected `celery -A <module> <command> ...`, got {argv}")
    module, sub, rest = argv[1], argv[2], argv[3:]
    app = getattr(importlib.import_module(module), "app", None)
    if not isinstance(app, Celery):
        raise click.UsageError(f"{module} has no Celery `app`")
    ctx = celery_cli.make_context("celery", ["-A", module])
    ctx.obj = CLIContext(app=app, no_color=True, workdir=None, quiet=True)  # what Celery's group callback sets
    command = celery_cli.get_command(ctx, sub)
    if command is None:
        raise click.UsageError(f"celery has no command {sub!r}")
    return sub, command.make_context(sub, list(rest), parent=ctx).params


def check_commands(compose: Compose) -> list[str]:
    problems: list[str] = []
    services = compose["services"]
    for name in NITERU_SERVICES:
        service = services[name]
        argv = service["command"]
        if not isinstance(argv, list):
            problems.append(f"{name}: command should be a list (no shell between Docker and the process)")
            continue
        settings = settings_from(env_of(service))
        if argv[0] == "niteru":
            problems += [f"{name}: {p}" for p in niteru_problems(argv[1:])]
        elif argv[0] == "celery":
            try:
                sub, params = celery_params(argv[1:])
            except (click.UsageError, ImportError) as exc:
                problems.append(f"{name}: {shlex.join(argv)}: {exc}")
                continue
            if sub == "worker" and params.get("queues") != [settings.celery_queue]:
                queues = params.get("queues")
                problems.append(f"{name}: worker listens on {queues}, tasks go to {settings.celery_queue}")
            if sub == "beat" and not Path(params["schedule"]).is_relative_to(settings.data_dir):
                problems.append(f"{name}: beat's schedule file is outside the data volume ({settings.data_dir})")
        else:
            problems.append(f"{name}: unknown program {argv[0]!r}")
    worker_check = services["worker"].get("healthcheck", {}).get("test", [])
    if worker_check[:1] == ["CMD-SHELL"]:
        argv = shlex.split(worker_check[1].replace("$$", "$"))
        try:
            sub, params = celery_params(argv[1:])
            if sub != "inspect" or params.get("command") != "ping":
                problems.append(f"worker healthcheck is not `celery inspect ping`: {argv}")
        except (click.UsageError, ImportError) as exc:
            problems.append(f"worker healthcheck: {exc}")
    return problems


def published(service: dict[str, Any]) -> dict[int, str]:
    """Container port -> the host side of each `ports` entry ("127.0.0.1:8000")."""
    out: dict[int, str] = {}
    for entry in service.get("ports", []):
        host, _, container = str(entry).rpartition(":")
        out[int(container.split("/")[0])] = host
    return out


def check_wiring(compose: Compose) -> list[str]:
    """Ports, URLs, volumes and the start order agree with each other and with the settings."""
    problems: list[str] = []
    services = compose["services"]
    declared = set(compose.get("volumes") or {})
    used: set[str] = set()
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith((".", "/")):
                continue  # a bind mount
            used.add(source)
            if source not in declared:
                problems.append(f"{name}: volume {source} is not declared under `volumes:`")
        for dep, condition in (service.get("depends_on") or {}).items():
            if dep not in services:
                problems.append(f"{name}: depends on unknown service {dep}")
            elif condition.get("condition") == "service_healthy" and not has_healthcheck(services[dep]):
                problems.append(f"{name}: waits for {dep} to be healthy, but {dep} has no healthcheck")
    problems += [f"volume {v} is declared but no service uses it" for v in sorted(declared - used)]

    for name in NITERU_SERVICES:
        service = services[name]
        env = env_of(service)
        settings = settings_from(env)
        mounts = dict(str(v).split(":")[1::-1] for v in service.get("volumes", []))  # target -> source
        if str(settings.data_dir) not in mounts or mounts[str(settings.data_dir)] not in declared:
            problems.append(f"{name}: its data_dir {settings.data_dir} is not on a named volume")
        if settings.qdrant_url is None:
            problems.append(f"{name}: no NITERU_QDRANT_URL: it would open the one-process embedded store")
        urls = {"qdrant": settings.qdrant_url or "", "broker": settings.celery_broker_url}
        urls["result backend"] = settings.celery_result_backend
        for what, url in urls.items():
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
            if host not in services:
                problems.append(f"{name}: {what} URL {url} names no service")
                continue
            if (service.get("depends_on") or {}).get(host, {}).get("condition") != "service_healthy":
                problems.append(f"{name}: uses {host} but does not wait for it to be healthy")
            expected = QDRANT_HTTP_PORT if services[host].get("image", "").startswith("qdrant/") else REDIS_PORT
            if port != expected:
                problems.append(f"{name}: {what} URL {url} is not on {host}'s port {expected}")
        if "NITERU_CATALOG_DIR" in env:
            catalog = mounts.get(env["NITERU_CATALOG_DIR"])
            if catalog is None:
                problems.append(f"{name}: NITERU_CATALOG_DIR {env['NITERU_CATALOG_DIR']} is not mounted")
            elif Path(catalog) != Settings.model_fields["catalog_dir"].default:
                problems.append(f"{name}: mounts {catalog}, not the settings' catalog_dir default")

    api = settings_from(env_of(services["api"]))
    if api.api_host != "0.0.0.0":
        problems.append(f"api binds {api.api_host}: unreachable from outside its container")
    if api.api_port not in published(services["api"]):
        problems.append(f"api serves on {api.api_port} but publishes {sorted(published(services['api']))}")
    qdrant = services["qdrant"]
    if QDRANT_HTTP_PORT in published(qdrant) and f"/dev/tcp/127.0.0.1/{QDRANT_HTTP_PORT}" not in str(
        qdrant["healthcheck"]["test"]
    ):
        problems.append("qdrant's healthcheck does not probe its REST port")
    if not str(qdrant.get("image", "")).startswith("qdrant/qdrant:v1."):
        problems.append(f"qdrant image {qdrant.get('image')} is not the official one pinned to a 1.x version")
    return problems


def has_healthcheck(service: dict[str, Any]) -> bool:
    check = service.get("healthcheck")
    if check is not None:
        return not check.get("disable") and check.get("test") not in (["NONE"], "NONE")
    # A service built from docker/Dockerfile inherits the image's HEALTHCHECK.
    build = service.get("build")
    if isinstance(build, dict) and build.get("dockerfile") == "docker/Dockerfile":
        return any(k == "HEALTHCHECK" for k, _ in dockerfile_instructions(DOCKERFILE.read_text()))
    return False


# --- the tests -------------------------------------------------------------------------------------------


def test_compose_has_the_services_of_the_issue() -> None:
    compose = load_compose()
    assert {"qdrant", "redis", "api", "worker", "beat", "ingest"} <= set(compose["services"])
    assert compose["services"]["ingest"].get("profiles") == ["demo"]  # `up` alone does not re-ingest


def test_environment_is_made_of_settings_fields() -> None:
    assert check_environment(load_compose()) == []


def test_commands_parse_with_the_real_clis() -> None:
    assert check_commands(load_compose()) == []


def test_ports_urls_volumes_and_start_order_agree() -> None:
    assert check_wiring(load_compose()) == []


def test_dockerfile_is_built_by_setup_sh_like_the_makefile() -> None:
    assert check_dockerfile(DOCKERFILE.read_text(), REPO) == []
    makefile = (REPO / "Makefile").read_text()
    install = re.search(r"^install:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert install is not None and "scripts/setup.sh" in install.group(1), "make install no longer runs setup.sh"


def test_dockerignore_keeps_local_state_out_of_the_build() -> None:
    patterns = {line.strip().strip("/") for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".venv", "data", "*.egg-info"} <= patterns


def compose_validators() -> list[list[str]]:
    found = []
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        found.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        found.append(["docker-compose"])
    return found


def test_compose_itself_accepts_the_file() -> None:
    """Compose's own parser and schema (v1 from Debian, or v2): offline, no engine needed for `config`."""
    validators = compose_validators()
    if not validators:
        if os.environ.get("CI"):
            pytest.fail("no Compose binary to validate compose.yaml (.ci/run installs Debian's docker-compose)")
        pytest.skip("no `docker compose` or `docker-compose` here (apt-get install docker-compose)")
    for tool in validators:
        run = subprocess.run(
            [*tool, "-f", str(COMPOSE), "--profile", "demo", "config"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, f"{shlex.join(tool)} config: {run.stderr}"
        # Also read what it printed: a wrapper that swallows the exit code prints nothing.
        resolved = yaml.safe_load(run.stdout)
        assert set(resolved["services"]) == set(load_compose()["services"]), shlex.join(tool)


# --- the image's health probe, against the real /healthz route -----------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_probe(port: int) -> int:
    env = {**os.environ, "NITERU_API_PORT": str(port)}
    return subprocess.run(
        [sys.executable, str(REPO / "docker" / "healthcheck.py")], env=env, timeout=60, cwd=REPO
    ).returncode


@pytest.fixture
def health_server() -> Iterator[int]:
    app = FastAPI()
    app.include_router(health_router)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(10)


def test_health_probe_passes_when_healthz_answers(health_server: int) -> None:
    assert run_probe(health_server) == 0


def test_health_probe_fails_when_nothing_listens() -> None:
    assert run_probe(free_port()) == 1


# --- the checks find what they are for --------------------------------------------------------------------


def broken(change: Any) -> Compose:
    # Through JSON: YAML's merge keys share one environment mapping between services, a deep copy would too.
    compose: Compose = json.loads(json.dumps(load_compose()))
    change(compose)
    return compose


def test_checks_catch_a_misspelt_variable() -> None:
    def misspell(c: Compose) -> None:
        c["services"]["worker"]["environment"]["NITERU_CELERY_BROKER_UR"] = "redis://redis:6379/0"

    assert check_environment(broken(misspell)) == ["worker: NITERU_CELERY_BROKER_UR is not a settings field"]


def test_checks_catch_an_invalid_value() -> None:
    def bad_port(c: Compose) -> None:
        c["services"]["api"]["environment"]["NITERU_API_PORT"] = "eighty"

    assert [p.split(":")[0] for p in check_environment(broken(bad_port))] == ["api"]


def test_checks_catch_wrong_commands() -> None:
    def wrong(c: Compose) -> None:
        c["services"]["api"]["command"] = ["niteru", "server"]
        c["services"]["ingest"]["command"] = ["niteru", "ingest", "--demo", "--limt", "5"]
        c["services"]["worker"]["command"] = ["celery", "-A", "jobs.celery_app", "worker", "-Q", "other"]
        c["services"]["beat"]["command"] = ["celery", "-A", "jobs.celery_ap", "beat"]

    problems = check_commands(broken(wrong))
    assert [p.split(":")[0] for p in problems] == ["api", "worker", "beat", "ingest"], problems


def test_checks_catch_broken_wiring() -> None:
    def rewire(c: Compose) -> None:
        s = c["services"]
        s["api"]["ports"] = ["127.0.0.1:8000:8080"]
        s["worker"]["environment"]["NITERU_QDRANT_URL"] = "http://qdrant:6334"
        s["beat"]["volumes"] = ["niteru-models:/data"]
        del s["redis"]["healthcheck"]

    problems = check_wiring(broken(rewire))
    expected = [
        "beat: volume niteru-models is not declared",
        "waits for redis to be healthy, but redis has no healthcheck",
        "worker: qdrant URL http://qdrant:6334 is not on qdrant's port 6333",
        "api serves on 8000 but publishes [8080]",
    ]
    for text in expected:
        assert any(text in p for p in problems), (text, problems)


def test_dockerfile_check_catches_drift(tmp_path: Path) -> None:
    text = DOCKERFILE.read_text()
    drifted = (
        text.replace("NITERU_EXTRAS= scripts/setup.sh", "pip install .")
        .replace("USER niteru", "USER root")
        .replace("COPY jobs/ jobs/", "COPY job/ jobs/")
        .replace("COPY api/ api/", "")
        .replace("NITERU_API_PORT=8000", "NITERU_API_PROT=8000")
    )
    problems = check_dockerfile(drifted, REPO)
    expected = ("no RUN of scripts/setup.sh", "runs as root", "COPY source job/", "NITERU_API_PROT", "package api")
    for text_ in expected:
        assert any(text_ in p for p in problems), (text_, problems)
