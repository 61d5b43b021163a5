# Container images: `make images` builds the one brokermesh image with docker or podman.
# Without a reachable container engine it fails and says so; it never claims a build.

IMAGE ?= ghcr.io/brokermesh/brokermesh
IMAGE_TAG ?= 0.1.0
# docker first, then podman; override with CONTAINER_ENGINE=/path/to/engine.
CONTAINER_ENGINE ?= $(shell command -v docker 2>/dev/null || command -v podman 2>/dev/null)

.PHONY: images
images:
	@engine='$(CONTAINER_ENGINE)'; \
	if [ -z "$$engine" ]; then \
		echo "make images: no container engine is available (neither docker nor podman is installed); no image was built" >&2; \
		exit 1; \
	fi; \
	if ! "$$engine" info >/dev/null 2>&1; then \
		echo "make images: no container engine is available ($$engine is installed but its daemon or socket is not reachable); no image was built" >&2; \
		exit 1; \
	fi; \
	"$$engine" build --file Dockerfile --tag '$(IMAGE):$(IMAGE_TAG)' .

# Pin the image an overlay runs to the digest of the pushed image before a release:
#   make release-pin DIGEST=sha256:<64 hex digits> [OVERLAY=prod]
# It edits k8s/overlays/$(OVERLAY)/kustomization.yaml (tools/pin_image.py); commit the result.
OVERLAY ?= prod
OVERLAY_DIR ?= k8s/overlays/$(OVERLAY)
PIN_PYTHON ?= .venv/bin/python

.PHONY: release-pin
release-pin:
	@if [ -z '$(DIGEST)' ]; then \
		echo "make release-pin: set DIGEST=sha256:<64 hex digits>, the pushed image's digest" >&2; \
		exit 2; \
	fi
	$(PIN_PYTHON) tools/pin_image.py --overlay '$(OVERLAY_DIR)' --digest '$(DIGEST)'
