# syntax=docker/dockerfile:1
# PlayCode Medic image:
#   docker build -t <registry>/playcode-medic:0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
# (SOURCE, the repository's URL, has its default below; a fork passes --build-arg SOURCE=<its URL>.)
#
# Reproducible: the base image is pinned by digest, the dependencies by constraints.txt
# (`make constraints` regenerates it) and the build backend by build-constraints.txt. Three stages:
#   deps     the pinned dependencies in a venv at /opt/medic that never gets a pip of its own
#            (the base image's pip installs into it); rebuilt only when constraints.txt changes
#   build    the pinned build backend in the stage's own Python (never copied on), Medic's wheel
#            built with it (--no-build-isolation: nothing fetched unpinned), installed with
#            --no-deps into /opt/medic-app (a .pth file in the venv puts it on the path); `pip
#            check` proves the set complete; REVISION is written beside the package, where
#            medic_build_info reads it (docs/operations.md)
#   runtime  the same base without pip, setuptools or compiler: the two directories, copied as
#            two layers (a code change re-ships only the small one), run as a non-root user
#
# Moving to a newer base is a deliberate change: look up the digest of the tag and replace the
# default below, e.g.  docker buildx imagetools inspect python:3.11-slim-bookworm  ("Digest:"),
# or override it for one build:  --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest>
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1

# ------------------------------------------------------------------------------ deps
FROM ${PYTHON_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
COPY constraints.txt /tmp/constraints.txt
RUN python -m venv --without-pip /opt/medic \
 && python -m pip --python /opt/medic/bin/python install --no-deps --only-binary=:all: \
        --requirement /tmp/constraints.txt \
 && echo /opt/medic-app > /opt/medic/lib/python3.11/site-packages/medic-app.pth

# ------------------------------------------------------------------------------ build
FROM deps AS build
WORKDIR /src
COPY build-constraints.txt /tmp/build-constraints.txt
RUN python -m pip install --no-deps --only-binary=:all: --requirement /tmp/build-constraints.txt
COPY pyproject.toml setup.py README.md ./
COPY service/ service/
COPY rules/ rules/
COPY playbooks/ playbooks/
# The wheel carries rules/ and playbooks/ as defaults; --no-deps: nothing beyond the pinned set.
RUN python -m pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && python -m pip --python /opt/medic/bin/python install --no-deps --no-index \
        --target /opt/medic-app /wheels/*.whl \
 && python -m pip --python /opt/medic/bin/python check \
 && /opt/medic-app/bin/medic --version
ARG REVISION=""
RUN printf '%s\n' "${REVISION:-unknown}" > /opt/medic-app/medic/REVISION

# ------------------------------------------------------------------------------ runtime
FROM ${PYTHON_IMAGE} AS runtime
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=""
ARG SOURCE="https://github.com/playcode-gg/playcode-medic"
LABEL org.opencontainers.image.title="playcode-medic" \
      org.opencontainers.image.description="PlayCode Medic: Alertmanager webhook -> diagnostics -> guarded remediation" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="LicenseRef-Proprietary" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/medic-app/bin:/opt/medic/bin:$PATH \
    MEDIC_HOST=0.0.0.0 \
    MEDIC_PORT=8080 \
    MEDIC_RULES_DIR=/etc/medic/rules \
    MEDIC_PLAYBOOKS_DIR=/etc/medic/playbooks \
    MEDIC_DATA_DIR=/var/lib/medic

# The base image's own pip, setuptools and wheel go too (and ensurepip's copies of them), so no
# pip is left anywhere in the image; then Medic's user and data dir.
RUN python -m pip uninstall --yes pip setuptools wheel \
 && rm -rf /usr/local/lib/python3.11/ensurepip/_bundled \
 && groupadd --system --gid 10001 medic \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/medic --no-create-home \
        --shell /usr/sbin/nologin medic \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/medic

COPY --from=deps /opt/medic /opt/medic
COPY --from=build /opt/medic-app /opt/medic-app

# The shipped PlayCode configuration; the Helm chart mounts its ConfigMaps over these.
COPY rules/ /etc/medic/rules/
COPY playbooks/ /etc/medic/playbooks/

USER 10001:10001
WORKDIR /var/lib/medic
EXPOSE 8080
# No HEALTHCHECK: Kubernetes probes /healthz and /readyz.
ENTRYPOINT ["medic"]
CMD ["serve"]
