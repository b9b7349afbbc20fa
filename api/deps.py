"""Access to what the lifespan loaded."""

from __future__ import annotations

from fastapi import Request

from api.services import Services


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services
