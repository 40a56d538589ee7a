# analytics-dashboard container image.
#
#   docker build -t analytics-dashboard:0.1.0 .
#   docker run --rm -p 8000:8000 --read-only --tmpfs /tmp analytics-dashboard:0.1.0 serve --demo --host 0.0.0.0
#
# The builder stage installs the project and its dependencies into a virtual environment; the
# final stage is the slim Python base plus that environment and the default configuration, run
# as a fixed non-root user. Nothing writes outside /tmp at run time, so the root filesystem can
# be mounted read-only (Kubernetes: readOnlyRootFilesystem with an emptyDir on /tmp).

# Both stages must use the same interpreter: the virtual environment links to it.
ARG PYTHON_IMAGE=python:3.11-slim-trixie

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src

# No pip inside the environment: the base image's pip installs into it (`pip --python`), so the
# final image carries no package installer of its own.
RUN python -m venv --without-pip /opt/analytics-dashboard

# Dependencies first, from pyproject.toml alone, so editing the code does not re-download numpy
# and scipy. Every runtime dependency ships manylinux wheels: no compiler is needed, here or later.
# The optional extra `reports` (reportlab, XlsxWriter) comes too: the image answers
# /api/v1/export/{xlsx,pdf} and sends the scheduled reports (docs/reports.md).
COPY pyproject.toml ./
RUN python -c 'import tomllib; project = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
print(*project["dependencies"], *project["optional-dependencies"]["reports"], sep="\n")' > requirements.txt \
    && pip --python /opt/analytics-dashboard/bin/python install --requirement requirements.txt

# The PDF reports' typeface: DejaVu Sans from Debian's fonts-dejavu-core (Latin, Greek, Cyrillic;
# reportlab's own Vera covers Western European text only). Unpacked here; the final stage takes
# the two files the reports use and the licence, and installs nothing.
RUN apt-get update \
    && apt-get download fonts-dejavu-core \
    && dpkg-deb --extract fonts-dejavu-core_*.deb /fonts \
    && rm -rf /var/lib/apt/lists/* fonts-dejavu-core_*.deb

# Then the project itself, as a wheel built by setuptools. pip byte-compiles everything it
# installs, so the read-only image never needs to write __pycache__.
COPY README.md ./
COPY exporter ./exporter
COPY api ./api
RUN pip --python /opt/analytics-dashboard/bin/python install --no-deps .


FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="analytics-dashboard" \
      org.opencontainers.image.description="Platform usage analytics: a Prometheus exporter and a JSON API"

# A fixed numeric id: Kubernetes' runAsNonRoot can only verify a numeric USER, and the manifests
# (runAsUser, fsGroup) name the same id.
RUN groupadd --system --gid 10001 analytics \
    && useradd --system --uid 10001 --gid analytics --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin analytics

COPY --from=builder /opt/analytics-dashboard /opt/analytics-dashboard
COPY --from=builder /fonts/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf \
                    /fonts/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf /usr/share/fonts/truetype/dejavu/
COPY --from=builder /fonts/usr/share/doc/fonts-dejavu-core/copyright /usr/share/doc/fonts-dejavu-core/copyright
COPY config/analytics.yaml /etc/analytics-dashboard/analytics.yaml

# PYTHONDONTWRITEBYTECODE: the root filesystem may be read-only (the bytecode was compiled at
# build time). Demo mode writes its generated events file into a temporary directory under /tmp.
ENV PATH="/opt/analytics-dashboard/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ANALYTICS_CONFIG=/etc/analytics-dashboard/analytics.yaml

USER 10001:10001
WORKDIR /opt/analytics-dashboard
EXPOSE 8000

# The service handles SIGTERM itself (Docker's and Kubernetes' stop signal): it stops accepting,
# lets requests in flight finish, closes the upstream sessions and exits 0.

# Standard library only (no curl in the image). /health answers 200 whenever the server runs,
# even while an upstream is down: an outage elsewhere must not restart this container.
# The port is the default server.port; change both together.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]

ENTRYPOINT ["analytics-dashboard"]
CMD ["serve"]
