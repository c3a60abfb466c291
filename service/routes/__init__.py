"""The service's routes, one module per job; :data:`routers` lists them in the order they are included."""

from __future__ import annotations

from fastapi import APIRouter

from paretoctl.service.routes.admin import router as admin_router
from paretoctl.service.routes.front import router as front_router
from paretoctl.service.routes.health import router as health_router
from paretoctl.service.routes.policy import router as policy_router

routers: tuple[APIRouter, ...] = (policy_router, front_router, health_router, admin_router)

__all__ = ["routers"]
