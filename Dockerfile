# streamrec worker image, CPU (the GPU variant: deploy/docker/Dockerfile.cuda).
#
#   docker build -t streamrec .
#   docker run --rm -p 9108:9108 -v "$PWD/runs/games:/models:ro" \
#       -e STREAMREC_BOOTSTRAP=kafka-1:9092 streamrec            # = streamrec worker
#   docker run --rm streamrec train --help                      # any other subcommand
#
# Every setting comes from STREAMREC_* variables (each flag of `streamrec worker` reads
# STREAMREC_<FLAG>); the ENV below are defaults to override. Packages come from PyPI
# only: its Linux torch wheel brings the CUDA libraries too, so the image is large.
# tests/unit/deploy/test_dockerfiles.py checks this file against the CLI and the worker.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Sources only (see .dockerignore); one COPY per package folder of pyproject.toml.
COPY pyproject.toml README.md ./
COPY cli cli
COPY benchmarks benchmarks
COPY eventlog eventlog
COPY worker worker
COPY encoder encoder
COPY index index
COPY kafka_io kafka_io
COPY common common
RUN /opt/venv/bin/pip install ".[cpu]"

FROM python:3.11-slim
COPY --from=build /opt/venv /opt/venv
# STREAMREC_BOOTSTRAP names the broker of deploy/compose.yaml; set your own.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    STREAMREC_BOOTSTRAP=kafka:9092 \
    STREAMREC_MODEL=/models \
    STREAMREC_METRICS_PORT=9108 \
    STREAMREC_DEVICE=cpu
# A fixed non-root uid (Kubernetes runAsNonRoot can check it); /models belongs to it so
# a fresh named volume mounted there is writable by the trainer.
RUN useradd --system --uid 10001 --create-home --home-dir /home/streamrec streamrec \
    && mkdir -p /models && chown streamrec:streamrec /models
USER 10001
WORKDIR /home/streamrec
EXPOSE 9108
# No curl in the slim image: Python asks /healthz on the configured metrics port.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('STREAMREC_METRICS_PORT', '9108') + '/healthz', timeout=4)"]
ENTRYPOINT ["streamrec"]
CMD ["worker"]
