# signoff serve in a container: the MCP endpoint (/mcp), /healthz and /metrics on port 8765,
# the Telegram bot, and the database in the /var/lib/signoff volume.
#
#   docker build -t signoff .
#   docker compose up -d          # see compose.yaml: config file, volume, secrets from .env
#
# Listening on 0.0.0.0 needs a bearer token: signoff refuses to start without SIGNOFF_HTTP_TOKEN.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY signoff ./signoff
COPY server ./server
COPY adapters ./adapters
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SIGNOFF_STATE_DIR=/var/lib/signoff
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && useradd --system --uid 10001 --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin signoff \
    && install -d -m 0700 -o signoff -g signoff /var/lib/signoff
USER signoff:signoff
VOLUME ["/var/lib/signoff"]
EXPOSE 8765
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8765/healthz', timeout=4)"]
CMD ["signoff", "serve", "--host", "0.0.0.0", "--port", "8765", "--log-format", "json"]
