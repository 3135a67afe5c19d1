# syntax=docker/dockerfile:1
# The security service: the shared base, the [security] extra of pyproject.toml and the service's
# own code. Build from the repository root after the base image:
#   docker build -f deploy/docker/security.Dockerfile -t aigw/security .
FROM aigw/base

USER root
COPY pyproject.toml /tmp/build/pyproject.toml
RUN pip install "/tmp/build[security]" && rm -rf /tmp/build

# Root owns the code, so the service cannot change it. Tilt's dev builds pass
# SOURCE_OWNER=10001, because live update copies changed files in as the service's user.
ARG SOURCE_OWNER=root
COPY --chown=${SOURCE_OWNER} libs/ /app/libs/
COPY --chown=${SOURCE_OWNER} services/__init__.py /app/services/__init__.py
COPY --chown=${SOURCE_OWNER} services/security/ /app/services/security/

USER 10001:10001
EXPOSE 50052 9102
CMD ["python", "-m", "services.security"]
