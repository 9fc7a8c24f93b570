# Build the UI, then run the server on Python 3.11 as an unprivileged user.
FROM node:20-bookworm-slim AS ui
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend/ ./
RUN npm run build

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    TRIO_BROADCAST_HOST=0.0.0.0 TRIO_BROADCAST_PORT=8000
WORKDIR /app
COPY pyproject.toml setup.py README.md LICENSE ./
COPY trio_broadcast/ trio_broadcast/
COPY --from=ui /src/trio_broadcast/static/ trio_broadcast/static/
RUN pip install --no-cache-dir . && useradd --system --uid 10001 broadcast
USER broadcast
EXPOSE 8000
STOPSIGNAL SIGTERM
# Asks the server where it listens: TRIO_BROADCAST_PORT (and HOST, when not a wildcard) may be
# changed with -e at run time.
HEALTHCHECK --interval=10s --timeout=3s CMD ["python", "-c", "import os, sys, urllib.request; \
host = os.environ.get('TRIO_BROADCAST_HOST', '127.0.0.1'); \
host = {'0.0.0.0': '127.0.0.1', '': '127.0.0.1', '::': '::1'}.get(host, host); \
host = f'[{host}]' if ':' in host else host; \
port = os.environ.get('TRIO_BROADCAST_PORT', '8000'); \
sys.exit(urllib.request.urlopen(f'http://{host}:{port}/health', timeout=2).status != 200)"]
CMD ["trio-broadcast", "serve"]
