"""Operations: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from stylefinder.serve.common import ApiError
from stylefinder.serve.schemas import ErrorResponse, Health

router = APIRouter(tags=["operations"])

_NOT_READY = {"model": ErrorResponse, "description": "still loading the index and the model"}


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: _NOT_READY})
def readyz(request: Request) -> Health:
    """Readiness: the index and the model are loaded, and the catalog's store answers (a
    PostgreSQL server that is down makes this a 503 `database_unavailable`)."""
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        raise ApiError(503, "not_ready", "still loading the index and the model")
    engine.store.generation()
    return Health(status="ready", items=len(engine), backbone=engine.store.header.backbone)


@router.get("/metrics", response_class=Response)
def metrics_route(request: Request) -> Response:
    """Prometheus metrics: requests and latency per route, index size."""
    metrics = request.app.state.metrics
    return Response(metrics.render(), media_type=metrics.content_type)
