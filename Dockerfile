FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    SAFESPACE_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY safespace ./safespace
COPY surveys ./surveys
COPY templates ./templates
COPY docs/PRIVACY.md docs/PRIVACY.es.md ./docs/
RUN pip install --no-cache-dir -e . \
    && useradd --system --uid 10001 --home-dir /app safespace \
    && mkdir -p /data && chown safespace /data

USER safespace
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["safespace", "serve", "--host", "0.0.0.0", "--port", "8000"]
