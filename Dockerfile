# syntax=docker/dockerfile:1
# One image for every brokermesh service. The entry point is `python -m`; the command names
# the service module, e.g. `docker run IMAGE brokermesh.services.oms` (Kubernetes: args).
#
# The base is pinned by version tag; CI resolves it to a digest when it pushes the image,
# and the overlays pin the pushed image (docs/deployment.md, "Images").
ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm

# ---------------------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv

WORKDIR /src
COPY pyproject.toml setup.py ./
COPY src/ src/
COPY mesh/ mesh/
COPY services/ services/
COPY gen/ gen/

# Every dependency ships wheels (quickfix-py included), so no compiler is needed here either.
RUN /opt/venv/bin/pip install --no-compile . \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

# setup.py declares only *.pyi and py.typed as package data; until it also names the data
# files, copy them (migrations/*.sql, data/securities.csv) beside the installed modules.
RUN cd src \
    && find brokermesh -type f ! -name '*.py' ! -path '*__pycache__*' \
        -exec cp --parents {} /opt/venv/lib/python3.11/site-packages/ \;

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
