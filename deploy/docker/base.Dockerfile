# syntax=docker/dockerfile:1
# The base of every gateway image: Python, the dependencies all services share (the
# project's core dependencies in pyproject.toml, without any extra) and an unprivileged
# user. Each service's image adds only its own extra and its own code.
#
# Build from the repository root, before the service images:
#   docker build -f deploy/docker/base.Dockerfile -t aigw/base .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app:/app/libs/gen

# The uid and gid the Kubernetes manifests run as (runAsUser 10001).
RUN groupadd --system --gid 10001 aigw \
 && useradd --system --uid 10001 --gid aigw --home-dir /app --shell /usr/sbin/nologin aigw

WORKDIR /app

COPY pyproject.toml /tmp/build/pyproject.toml
RUN pip install /tmp/build && rm -rf /tmp/build

USER 10001:10001
