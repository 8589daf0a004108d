# One image for every process of the platform (docker-compose.yml): the ASGI server, the Celery
# workers, beat and the migrations run by the init service. Configuration is environment only.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# Static files are served by WhiteNoise from STATIC_ROOT; collected at build time with the
# development settings (nothing secret is needed to copy files).
RUN python manage.py collectstatic --noinput \
    && useradd --system --uid 10001 --home-dir /app loyalty \
    && mkdir -p /app/media \
    && chown -R loyalty /app/media

USER loyalty
EXPOSE 8000
CMD ["daphne", "--bind", "0.0.0.0", "--port", "8000", "--proxy-headers", "config.asgi:application"]
