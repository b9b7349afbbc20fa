"""``/v1/tasks``: the Celery task contract over HTTP, for shop backends without a Redis of their own.

Same names and keyword arguments as ``send_task`` (see ``jobs/tasks.py``), checked by the same argument
models (``jobs.registry``). With the embedded store the
task runs in this process (``jobs.inline``); with a Qdrant server it goes to the Celery workers. Either
way the answer is 202 with a task id to poll.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import services_of
from api.errors import ApiError, ServiceUnavailableError
from api.routers.products import ERRORS
from api.security import require_read, require_write
from api.task_gateway import TaskGateway
from jobs import registry

router = APIRouter(prefix="/v1/tasks", tags=["tasks"], dependencies=[Depends(require_read)])


# "kwargs" as in send_task; the pydantic mypy plugin's generated __init__ clashes with a field of that name.
class TaskIn(BaseModel):  # type: ignore[no-redef]
    name: str = Field(description=f"One of: {', '.join(registry.NAMES)}.", examples=[registry.DELETE])
    kwargs: dict[str, Any] = Field(default_factory=dict, examples=[{"product_id": "myn-10035"}])


class TaskOut(BaseModel):
    task_id: str
    name: str
    status: str = Field(description="queued, started, retrying, succeeded or failed.")
    result: dict[str, Any] | None = None
    error: str | None = None
    retries: int = 0


def _gateway(request: Request) -> TaskGateway:
    gateway = services_of(request).tasks
    if gateway is None:
        raise ServiceUnavailableError("task executor not started")
    return gateway


SUBMIT_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    503: {
        "description": "Task broker or executor unavailable, or the inline task queue is full "
        "(NITERU_JOBS_INLINE_QUEUE_MAX; then with Retry-After). Nothing was queued.",
        "headers": {"Retry-After": {"description": "Seconds to wait (queue full)", "schema": {"type": "integer"}}},
    },
}


@router.post(
    "", status_code=202, response_model=TaskOut, responses=SUBMIT_ERRORS, dependencies=[Depends(require_write)]
)
async def submit(body: TaskIn, request: Request, response: Response) -> TaskOut:
    """Queue a task. Arguments are checked here, so a malformed call is a 422 now, not a failure later.
    A missing ``image_version`` (or a delete's ``version``) is set to the time of this request. A 202 means
    the task is stored (in Redis, or on disk for the inline executor) and will run."""
    try:
        parsed = registry.parse(body.name, body.kwargs, services_of(request).settings).model_dump(exclude_unset=True)
        # Versions are stamped now, at submission: a task's order is the order it was accepted in.
        checked = registry.stamp(body.name, parsed)
    except registry.UnknownTaskError as exc:
        raise ApiError(422, str(exc)) from None
    except ValidationError as exc:
        raise ApiError(422, f"bad kwargs for {body.name}: {exc.errors(include_url=False)}") from None
    state = await run_in_threadpool(_gateway(request).submit, body.name, checked)
    response.headers["Location"] = f"/v1/tasks/{state['task_id']}"
    return TaskOut(**state)


@router.get("/{task_id}", response_model=TaskOut, responses=ERRORS)
async def status(task_id: Annotated[str, Path(max_length=64)], request: Request) -> TaskOut:
    state = await run_in_threadpool(_gateway(request).state, task_id)
    if state is None:
        raise ApiError(404, f"no task {task_id!r} (unknown, or its result expired)")
    return TaskOut(**state)
