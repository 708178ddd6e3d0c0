"""Pure decisions: no kopf, no Kubernetes client, no HTTP, no clock reads (enforced by import-linter)."""
