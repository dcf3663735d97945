# Serving image: the serving install only (no torch), the default model repository, a non-root user.
FROM python:3.11-slim AS serve

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    ZOOSERVE_HOST=0.0.0.0 \
    ZOOSERVE_PORT=8000 \
    ZOOSERVE_REPOSITORY=/srv/models

WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
COPY training ./training
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /app zooserve
COPY models /srv/models

USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2).status == 200 else 1)"]
CMD ["zooserve-serve"]
