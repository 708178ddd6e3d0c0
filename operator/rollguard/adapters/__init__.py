"""Adapters to the outside world: the Kubernetes API, Prometheus, traffic routers."""
