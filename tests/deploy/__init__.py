"""Validation of the deployment: k8s/ overlays, istio/, the Dockerfile and make images."""
