# syntax=docker/dockerfile:1
# The controller's image: `cloudrun-reconciler run`, the long-running loop, as a non-root process.
#
# Two stages. `build` turns the source into a wheel and installs it, with its runtime dependencies only
# (no test extra, no compilers), into a virtual environment; the final stage copies that environment onto
# a clean base and nothing else. Both stages name the same base, pinned by version (hadolint checks a
# literal tag, not one behind an ARG), so the environment's interpreter path resolves.
# tests/test_image.py lints this file and replays its install steps outside Docker.
#
# Build it where a Docker engine or Cloud Build is at hand, from the root of the repository:
#   gcloud builds submit --project "$PROJECT_ID" --tag "$IMAGE" .   (or: docker build -t "$IMAGE" .)

FROM python:3.11.14-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller/ controller/
COPY desired/ desired/
COPY emulator/ emulator/
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install /wheels/cloudrun_reconciler-*.whl

FROM python:3.11.14-slim-bookworm
# A fixed numeric uid, so USER is checkable as non-root without reading /etc/passwd.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin reconciler
COPY --from=build /opt/venv /opt/venv
# PORT: Cloud Run sets it (8080); `run` listens on it. DESIRED_STATE_FILE: where deploy/service.yaml
# mounts the desired file read-only; `run --file` overrides it.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=8080 \
    DESIRED_STATE_FILE=/config/desired-state.yaml
USER 10001
EXPOSE 8080
ENTRYPOINT ["cloudrun-reconciler", "run"]
