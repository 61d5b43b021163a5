# syntax=docker/dockerfile:1
# One image for every brokermesh service. The entry point is `python -m`; the command names
# the service module, e.g. `docker run IMAGE brokermesh.services.oms` (Kubernetes: args).
#
# The base is pinned by version tag (append @sha256:... to pin its digest too). The overlays
# name the pushed brokermesh image by tag; `make release-pin` pins its digest in an overlay
# (docs/deployment.md, "Images").
ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm

# ---------------------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv

WORKDIR /src
COPY pyproject.toml setup.py requirements.lock ./
COPY src/ src/
COPY mesh/ mesh/
COPY services/ services/
COPY gen/ gen/

# requirements.lock pins the whole resolved dependency set, so the image runs the versions
# the tests ran; setup.py's package data carries the migrations and reference data.
# Every dependency ships wheels (quickfix-py included), so no compiler is needed here either.
RUN /opt/venv/bin/pip install --no-compile -c requirements.lock . \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

# ---------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

# A fixed, unprivileged identity; the manifests run as the same UID (runAsUser 10001).
RUN groupadd --system --gid 10001 brokermesh \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin brokermesh \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/brokermesh

# The virtual environment only: no sources, no build tools.
COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BROKERMESH_DATA_DIR=/var/lib/brokermesh

USER 10001:10001
WORKDIR /var/lib/brokermesh

ENTRYPOINT ["python", "-m"]
CMD ["brokermesh.services.gateway"]
