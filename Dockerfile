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
COPY pyproject.toml README.md ./
COPY trio_broadcast/ trio_broadcast/
COPY --from=ui /src/trio_broadcast/static/ trio_broadcast/static/
RUN pip install --no-cache-dir . && useradd --system --uid 10001 broadcast
USER broadcast
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health').status != 200)"
CMD ["trio-broadcast", "serve"]
