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
# changed with -e at run time; with TRIO_BROADCAST_CERTFILE it asks over TLS (its own loopback
# address, so the certificate's name is not checked).
HEALTHCHECK --interval=10s --timeout=3s CMD ["python", "-c", "import os, ssl, sys, urllib.request; \
env = os.environ.get; \
host = env('TRIO_BROADCAST_HOST', '127.0.0.1'); \
host = {'0.0.0.0': '127.0.0.1', '': '127.0.0.1', '::': '::1'}.get(host, host); \
host = f'[{host}]' if ':' in host else host; \
tls = bool(env('TRIO_BROADCAST_CERTFILE')); \
url = f\"{'https' if tls else 'http'}://{host}:{env('TRIO_BROADCAST_PORT', '8000')}/health\"; \
context = ssl._create_unverified_context() if tls else None; \
sys.exit(urllib.request.urlopen(url, timeout=2, context=context).status != 200)"]
CMD ["trio-broadcast", "serve"]
