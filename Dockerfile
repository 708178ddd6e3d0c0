# The rollguard operator image: `docker build -t rollguard .`
# Builder: install the package and its dependencies into a venv. Final: that venv on the same
# slim Python, no build tools, no shell needed, running as the unprivileged uid 65532.

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/rollguard
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
# pip and setuptools are not needed at run time: drop them from the venv the final stage copies.
RUN /opt/rollguard/bin/pip install --no-cache-dir /src \
    && /opt/rollguard/bin/pip uninstall --yes pip setuptools

FROM python:3.11-slim
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
