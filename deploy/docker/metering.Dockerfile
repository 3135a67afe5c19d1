# syntax=docker/dockerfile:1
# The metering service: the shared base, the [metering] extra of pyproject.toml and the service's
# own code. Build from the repository root after the base image:
#   docker build -f deploy/docker/metering.Dockerfile -t aigw/metering .
FROM aigw/base

USER root
COPY pyproject.toml /tmp/build/pyproject.toml
RUN pip install "/tmp/build[metering]" && rm -rf /tmp/build

COPY libs/ /app/libs/
COPY services/__init__.py /app/services/__init__.py
COPY services/metering/ /app/services/metering/

USER 10001:10001
EXPOSE 50054 9104
CMD ["python", "-m", "services.metering"]
