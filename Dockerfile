# The production image. One image, two kinds of process (see README, "Production"):
#   web:    the default command, gunicorn serving llmops.wsgi on 0.0.0.0:8000
#   worker: python manage.py rundramatiq --processes 1 --threads 4
# Configuration comes from the environment at run time (DATABASE_URL, REDIS_URL, SECRET_KEY, ...).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system llmops \
    && useradd --system --gid llmops --home-dir /app --no-create-home --shell /usr/sbin/nologin llmops

WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# staticfiles/ is written by collectstatic below; var/ is where the settings put SQLite when no
# DATABASE_URL is given (never in production, but the settings create it when they load).
RUN mkdir -p staticfiles var && chown llmops:llmops staticfiles var

USER llmops

# The settings refuse to load without a SECRET_KEY; this throwaway one exists only for this step
# and is not in the image's environment: the real key is given at run time.
ARG COLLECTSTATIC_SECRET_KEY=collectstatic-only-not-a-secret
RUN SECRET_KEY="$COLLECTSTATIC_SECRET_KEY" python manage.py collectstatic --noinput

EXPOSE 8000

# Threads keep a worker process free while requests wait for a run (?wait=); the timeout stays
# above RUN_WAIT_MAX_S. WEB_CONCURRENCY (read by gunicorn) sets the number of processes. No control
# socket: it would be created under $HOME, which the non-root user cannot write.
CMD ["gunicorn", "llmops.wsgi:application", "--bind", "0.0.0.0:8000", "--threads", "4", "--timeout", "120", \
     "--no-control-socket"]
