# syntax=docker/dockerfile:1
# The router service: the shared base, the [router] extra of pyproject.toml and the service's
# own code. Build from the repository root after the base image:
#   docker build -f deploy/docker/router.Dockerfile -t aigw/router .
FROM aigw/base

USER root
COPY pyproject.toml /tmp/build/pyproject.toml
RUN pip install "/tmp/build[router]" && rm -rf /tmp/build

COPY libs/ /app/libs/
COPY services/__init__.py /app/services/__init__.py
COPY services/router/ /app/services/router/
# The provider simulator, which the dev cluster runs from this image for the demo catalog.
COPY tools/__init__.py /app/tools/__init__.py
COPY tools/simulator/ /app/tools/simulator/
COPY deploy/catalog/ /app/deploy/catalog/

USER 10001:10001
EXPOSE 50051 9101
CMD ["python", "-m", "services.router"]
