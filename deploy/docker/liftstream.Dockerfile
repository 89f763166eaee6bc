# The LiftStream image: `liftstream worker`, `liftstream api`, `liftstream export-triton`, ...
#   docker build -f deploy/docker/liftstream.Dockerfile -t ghcr.io/liftstream/liftstream:0.1.0 .
FROM python:3.11.10-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/liftstream
# the CPU build of torch first (the models run on Triton; in-process only as a fallback), so the
# project's torch requirement is already met and pip never pulls CUDA wheels
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY inference inference
COPY streams streams
COPY dashboards dashboards
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /var/lib/liftstream --create-home liftstream
USER 10001
WORKDIR /var/lib/liftstream
ENTRYPOINT []
CMD ["liftstream", "--help"]
