# syntax=docker/dockerfile:1
# The paretoctl policy service: GET /policy, /front, /healthz, /readyz, /metrics.
# The [server] extra only (pydantic, FastAPI, uvicorn): no torch, so the image stays small.
#
#   docker build -t paretoctl-policy .
#   docker run -p 8000:8000 -v "$PWD/runs/build:/data:ro" paretoctl-policy
#
# Mount the front's DIRECTORY at /data (not the file alone): the service runs as uid 10001, so the
# front must be readable by others (dump_front writes 0644), and a replaced file (a new inode) is
# only visible through a directory mount. /data is also the reload directory (docs/service.md).
#
# Or bake a front into the image (the path is relative to the build context and is validated here):
#   docker build --build-arg FRONT=runs/build/front.json -t paretoctl-policy:baked .
#
# Admin reloads (POST /admin/reload) need a token: -e PARETOCTL_ADMIN_TOKEN=...; they read only inside
# PARETOCTL_RELOAD_DIR (/data).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the service needs; the [build] extra (torch, timm, botorch) is not installed.
COPY pyproject.toml README.md /src/
COPY service /src/service
COPY paretoctl /src/paretoctl
# The front loader checks schedules with the torch-free paretoctl.models.schedule; nothing else of models/.
COPY models/__init__.py models/schedule.py /src/models/
RUN pip install "/src[server]" && rm -rf /src

WORKDIR /app
COPY configs/devices ./configs/devices

# Optional baked-in front: bind-mount the build context for one step, so no extra layer holds it.
ARG FRONT=""
RUN --mount=type=bind,source=.,target=/ctx \
    mkdir -p /data \
    && if [ -n "$FRONT" ]; then \
         cp "/ctx/$FRONT" /data/front.json \
         && python -c "from paretoctl.service.schema import load_front; f = load_front('/data/front.json'); print('baked front', f.checksum)"; \
       fi

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin paretoctl \
    && chown -R paretoctl /data
USER paretoctl

ENV PARETOCTL_FRONT_PATH=/data/front.json \
    PARETOCTL_RELOAD_DIR=/data \
    PARETOCTL_DEVICES_DIR=/app/configs/devices

EXPOSE 8000

# slim has no curl: probe with the standard library.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]

CMD ["paretoctl", "serve", "--front", "/data/front.json", "--host", "0.0.0.0", "--port", "8000"]
