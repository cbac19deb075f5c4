# The image runs the wheel: templates, static files, catalogs, migrations and the privacy page are
# package data (tests/test_wheel.py serves pages from a wheel installed this way).
FROM python:3.11-slim-bookworm AS build

WORKDIR /src
COPY pyproject.toml README.md ./
COPY safespace ./safespace
COPY surveys ./surveys
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim-bookworm

# pg_dump, pg_restore and psql for `safespace backup` and `safespace restore`, of the server's major
# version: docker-compose.yml's db (tests/test_docs.py keeps the two in step). Debian's own are 15, too
# old to dump 16, and a newer client's script does not load into an older server (17 writes SET
# transaction_timeout), so they come from apt.postgresql.org. Another server: --build-arg POSTGRES_MAJOR=N.
ARG POSTGRES_MAJOR=16
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates postgresql-common \
    && /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y \
    && apt-get install -y --no-install-recommends postgresql-client-${POSTGRES_MAJOR} \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    SAFESPACE_DATA_DIR=/data

# The dependencies at the versions the test suite passed with (requirements.lock, as `make setup` uses it).
COPY requirements.lock /tmp/requirements.lock
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir -c /tmp/requirements.lock /tmp/wheels/safespace-*.whl \
    && rm -rf /tmp/wheels /tmp/requirements.lock \
    && useradd --system --uid 10001 --home-dir /app safespace \
    && mkdir -p /data && chown safespace /data

WORKDIR /app
USER safespace
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["safespace", "serve", "--host", "0.0.0.0", "--port", "8000"]
