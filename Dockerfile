# syntax=docker/dockerfile:1
# PlayCode Medic image: `docker build -t <registry>/playcode-medic:<version> .`
# Stage 1 builds wheels (Medic's and its dependencies'); stage 2 installs them into a venv on a
# clean slim base: no compiler, no pip cache, no source tree in the final image.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ------------------------------------------------------------------------------ build
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service/ service/
RUN python -m pip wheel --wheel-dir /wheels .

# ------------------------------------------------------------------------------ runtime
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="playcode-medic" \
      org.opencontainers.image.description="PlayCode Medic: Alertmanager webhook -> diagnostics -> guarded remediation"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/medic/bin:$PATH \
    MEDIC_HOST=0.0.0.0 \
    MEDIC_PORT=8080 \
    MEDIC_RULES_DIR=/etc/medic/rules \
    MEDIC_PLAYBOOKS_DIR=/etc/medic/playbooks \
    MEDIC_DATA_DIR=/var/lib/medic

RUN groupadd --system --gid 10001 medic \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/medic --no-create-home \
        --shell /usr/sbin/nologin medic \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/medic

# Install from the build stage's wheels only (--no-index: nothing is fetched here), then drop
# pip and setuptools from the venv: the running image never installs anything.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/medic \
 && /opt/medic/bin/pip install --no-index --no-cache-dir --find-links=/wheels playcode-medic \
 && /opt/medic/bin/pip uninstall --yes pip setuptools \
 && medic --version

# The shipped PlayCode configuration; the Helm chart mounts its ConfigMaps over these.
COPY rules/ /etc/medic/rules/
COPY playbooks/ /etc/medic/playbooks/

USER 10001:10001
WORKDIR /var/lib/medic
EXPOSE 8080
# No HEALTHCHECK: Kubernetes probes /healthz and /readyz.
ENTRYPOINT ["medic"]
CMD ["serve"]
