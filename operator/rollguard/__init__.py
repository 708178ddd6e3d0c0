"""rollguard: resilient ML model deployments on Kubernetes."""
