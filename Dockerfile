# The rollguard operator image: `docker build -t rollguard .`
# Builder: install the package and its dependencies into a venv. Final: that venv on the same
# Python, no build tools, no pip, no shell needed, running as the unprivileged uid 65532.
# Both bases are overridable: `make image` builds them from Debian's own python3 (no registry here,
# see tools/image/build-base.sh); with Docker the defaults below are used. The two must ship the
# same Python at the same path, because the venv's interpreter is a symlink into the base.
ARG BASE=python:3.11-slim
ARG BUILDER_BASE=python:3.11-slim

FROM ${BUILDER_BASE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/rollguard
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
# pip and setuptools are not needed at run time: drop them from the venv the final stage copies.
# kubernetes/aio is the client's asyncio twin (68 MB with bytecode); rollguard uses the sync client.
# The generated client/api and client/models (57 MB, mostly docstrings) ship as sourceless bytecode
# compiled without docstrings (-o 2; they hold no asserts): 18 MB. Tracebacks there lose source lines.
# The optional secret `ca-bundle` lets pip trust a TLS-intercepting proxy's CA (tools/image/build.sh).
RUN --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && /opt/rollguard/bin/pip install --no-cache-dir /src \
    && /opt/rollguard/bin/pip uninstall --yes pip setuptools \
    && k8s=$(echo /opt/rollguard/lib/python3*/site-packages/kubernetes) \
    && rm -rf "$k8s/aio" "$k8s"/*/*_test.py \
    && python3 -m compileall -q -b -o 2 "$k8s/client/api" "$k8s/client/models" \
    && find "$k8s/client/api" "$k8s/client/models" \( -name '*.py' -o -name __pycache__ \) -prune -exec rm -rf {} + \
    && /opt/rollguard/bin/python -c "import rollguard.handlers, rollguard.cli"

FROM ${BASE}
LABEL org.opencontainers.image.title="rollguard" \
      org.opencontainers.image.description="Canary rollouts of ML models on Kubernetes, gated by Prometheus" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/rollguard/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=builder /opt/rollguard /opt/rollguard
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["rollguard"]
CMD ["run"]
