# syntax=docker/dockerfile:1
# The security service: the shared base, the [security] extra of pyproject.toml and the service's
# own code. Build from the repository root after the base image:
#   docker build -f deploy/docker/security.Dockerfile -t aigw/security .
FROM aigw/base

USER root
COPY pyproject.toml /tmp/build/pyproject.toml
RUN pip install "/tmp/build[security]" && rm -rf /tmp/build

COPY libs/ /app/libs/
COPY services/__init__.py /app/services/__init__.py
COPY services/security/ /app/services/security/

USER 10001:10001
EXPOSE 50052 9102
CMD ["python", "-m", "services.security"]
