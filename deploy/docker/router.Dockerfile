# syntax=docker/dockerfile:1
# The router service: the shared base, the [router] extra of pyproject.toml and the service's
# own code. Build from the repository root after the base image:
#   docker build -f deploy/docker/router.Dockerfile -t aigw/router .
FROM aigw/base

USER root
COPY pyproject.toml /tmp/build/pyproject.toml
RUN pip install "/tmp/build[router]" && rm -rf /tmp/build

# Root owns the code, so the service cannot change it. Tilt's dev builds pass
# SOURCE_OWNER=10001, because live update copies changed files in as the service's user.
ARG SOURCE_OWNER=root
COPY --chown=${SOURCE_OWNER} libs/ /app/libs/
COPY --chown=${SOURCE_OWNER} services/__init__.py /app/services/__init__.py
COPY --chown=${SOURCE_OWNER} services/router/ /app/services/router/
# The provider simulator, which the dev cluster runs from this image for the demo catalog.
COPY --chown=${SOURCE_OWNER} tools/__init__.py /app/tools/__init__.py
COPY --chown=${SOURCE_OWNER} tools/simulator/ /app/tools/simulator/
COPY --chown=${SOURCE_OWNER} deploy/catalog/ /app/deploy/catalog/

USER 10001:10001
EXPOSE 50051 9101
CMD ["python", "-m", "services.router"]
