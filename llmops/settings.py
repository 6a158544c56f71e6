"""Project settings. Every knob is read from the environment (see README "Configuration").

With no DATABASE_URL / REDIS_URL the project runs on its embedded default: a SQLite file, a local
memory cache and an in-process Dramatiq broker, so a newcomer needs nothing but Python.
"""

import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
# A secret key is required outside debug; the development fallback is never used in production.
SECRET_KEY = env.str("SECRET_KEY", default="") or ("dev-only-insecure-key-do-not-use-in-production" if DEBUG else "")
if not SECRET_KEY:
    raise environ.ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_dramatiq",
    "django_ratelimit",  # its system checks: the rate limit cache must be shared and atomic
    "accounts",
    "prompts",
    "providers",
    "runs",
    "billing",
    "webhooks",
    "gateway",
    "evals",
]

MIDDLEWARE = [
    "llmops.middleware.RequestIDMiddleware",
    "llmops.metrics.MetricsMiddleware",
    # Early, so a refused request costs little; after the metrics, so 429s are counted there.
    "accounts.middleware.RateLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's and Swagger UI's static files from gunicorn, with no proxy needed.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "llmops.urls"
WSGI_APPLICATION = "llmops.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: PostgreSQL in production, a SQLite file when DATABASE_URL is unset.
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    (BASE_DIR / "var").mkdir(exist_ok=True)
    # Wait for the write lock instead of failing at once when the in-process worker writes too.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    # Transactions take the write lock when they begin: one that read first and wrote second would
    # otherwise fail at once with "database is locked" (a 500) while another connection writes,
    # instead of waiting for the timeout above. Found by .ci/schemathesis.sh against gunicorn.
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
    # A file, not shared-cache memory, for tests: worker threads then wait on locks instead of
    # failing with "database table is locked".
    # One file per test process, so parallel runs in one checkout do not share a database.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "var" / f"test-db-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Without collectstatic (development, tests) WhiteNoise finds files in the apps, as runserver does.
WHITENOISE_USE_FINDERS = not (STATIC_ROOT / "admin").exists()
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns on every request when it is missing
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # Compressed but not hashed: no manifest, so pages also render before collectstatic (tests).
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
    },
}

# Redis: the Dramatiq broker and the shared cache. Unset: in-process broker and a local cache.
REDIS_URL = env.str("REDIS_URL", default="")

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="llmops"),
        },
        # Rate limit counters (accounts.ratelimit). django-redis rather than Django's own RedisCache:
        # both add and incr atomically, but django-ratelimit's system checks only know django-redis.
        "ratelimit": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="llmops"),
            # A hung Redis must not hang every request; a failed count admits the request (logged).
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
        },
    }
else:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        # Its own store and a large one, so culling other entries never drops a live counter.
        "ratelimit": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "ratelimit",
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        },
    }
    # django-ratelimit refuses a local memory cache (E003, and W001 "not officially supported")
    # because each process would count separately. The embedded default is one process, so its
    # local memory is the one shared, atomic (locked) counter store; with REDIS_URL both checks run.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]
RATELIMIT_USE_CACHE = "ratelimit"

DRAMATIQ_BROKER = {
    "BROKER": ("llmops.dramatiq_broker.RedisBroker" if REDIS_URL else "dramatiq.brokers.stub.StubBroker"),
    # The runs queue is polled at least every DRAMATIQ_BRISK_POLL_MS when idle: a client may be waiting
    # on it (`?wait=`); llmops/dramatiq_broker.py.
    "OPTIONS": (
        {
            "url": REDIS_URL,
            "brisk_queues": ("runs",),
            "brisk_poll_ms": env.int("DRAMATIQ_BRISK_POLL_MS", default=10),
        }
        if REDIS_URL
        else {}
    ),
    "MIDDLEWARE": [
        "dramatiq.middleware.AgeLimit",
        "dramatiq.middleware.TimeLimit",
        "dramatiq.middleware.Callbacks",
        "dramatiq.middleware.Retries",
        "django_dramatiq.middleware.DbConnectionsMiddleware",
        "runs.dramatiq_middleware.RunsWorkerLifecycle",
    ],
}
# Worker metrics (messages, retries, durations) served by each worker machine on port
# `dramatiq_prom_port` (9191) for Prometheus. Off on the embedded default (no separate workers).
if env.bool("DRAMATIQ_PROMETHEUS", default=bool(REDIS_URL)):
    DRAMATIQ_BROKER["MIDDLEWARE"] = ["dramatiq.middleware.prometheus.Prometheus", *DRAMATIQ_BROKER["MIDDLEWARE"]]
DRAMATIQ_AUTODISCOVER_MODULES = ["tasks"]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.APIKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "accounts.permissions.HasScope",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["llmops.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "llmops.pagination.StandardPagination",
    "DEFAULT_SCHEMA_CLASS": "llmops.schema.AutoSchema",
    "EXCEPTION_HANDLER": "llmops.exception_handler.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"] = [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ]

SPECTACULAR_SETTINGS = {
    "TITLE": "LLMOps API",
    "DESCRIPTION": (
        "Versioned prompts, runs against real models and their cost. "
        "Authenticate with `Authorization: Bearer <key>` or `X-API-Key: <key>`."
    ),
    "VERSION": "1.0.0",
    # Sections in the order of the workflow (else alphabetical: batches first): Swagger UI and ReDoc
    # follow this list.
    "TAGS": [
        {"name": "projects", "description": "Projects (what owns everything else) and their members' roles."},
        {"name": "prompts", "description": "Prompts, their immutable versions and labels; rendering."},
        {"name": "runs", "description": "Run a prompt version against its model; poll, list, cancel."},
        {"name": "batches", "description": "One run per item of a list or file, a few at a time; export results."},
        {"name": "datasets", "description": "Versioned sets of examples to evaluate prompts on; import and export."},
        {
            "name": "experiments",
            "description": "Versions of a prompt run over a dataset and scored, compared; the gates on labels.",
        },
        {"name": "evals", "description": "The scorers, scores of runs, and reports comparing a split label's arms."},
        {
            "name": "gateway",
            "description": "OpenAI-compatible (`base_url=<host>/v1`): chat completions of prompts or models.",
        },
        {"name": "costs", "description": "What your runs cost: cost entries and spend summaries."},
        {"name": "budgets", "description": "Hard spending limits for you or one of your keys."},
        {"name": "keys", "description": "API keys: create, list, rotate, revoke."},
        {"name": "webhooks", "description": "Endpoints that receive signed event POSTs, and their deliveries."},
        {"name": "health", "description": "Dependency health (no authentication)."},
    ],
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # One name for a choice set used by fields of different names (event, events).
    "ENUM_NAME_OVERRIDES": {
        "WebhookEventEnum": "webhooks.models.WebhookEvent",
        "BatchStatusEnum": "runs.models.Batch.Status",
        "BatchItemStatusEnum": "runs.batch_selectors.ITEM_STATUSES",
        # A member's role, apart from a chat message's (both fields are named role).
        "ProjectRoleEnum": "accounts.models.Role",
        # A gateway message's role (OpenAI's, with developer), apart from a prompt message's.
        "GatewayRoleEnum": "gateway.api.serializers.ROLES",
    },
}

# Request bodies above this size are refused with 413 before any parsing.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=1024 * 1024)
# JSON bodies nested deeper than this are refused with 400 (llmops.parsers.JSONParser).
JSON_MAX_DEPTH = env.int("JSON_MAX_DEPTH", default=32)

# API keys: writing last_used_at on every request would turn each read into a write;
# it is refreshed at most once per this many seconds.
API_KEY_LAST_USED_RESOLUTION = env.int("API_KEY_LAST_USED_RESOLUTION", default=60)
# How long a process may keep in memory the rows every call reads (API keys, providers, prices,
# prompts and their labels, which budgets and webhook endpoints apply: llmops/config_cache.py); any
# write to them invalidates every process at once through the shared cache, so only with REDIS_URL
# (0 turns it off).
CONFIG_CACHE_SECONDS = env.int("CONFIG_CACHE_SECONDS", default=30 if REDIS_URL else 0)

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "llmops.logging.RequestIDFilter"}},
    "formatters": {
        "json": {"()": "llmops.logging.JSONFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": LOG_FORMAT,
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # httpx2 logs every request's full URL at INFO; webhook URLs may carry the receiver's tokens.
        "httpx2": {"level": "WARNING"},
    },
}

if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
    SECURE_CONTENT_TYPE_NOSNIFF = True

# Runs: retries of transient provider errors, time limit, and recovery of lost work.
RUN_MAX_ATTEMPTS = env.int("RUN_MAX_ATTEMPTS", default=4)
RUN_RETRY_BASE_BACKOFF_S = env.float("RUN_RETRY_BASE_BACKOFF_S", default=1.0)
RUN_RETRY_MAX_BACKOFF_S = env.float("RUN_RETRY_MAX_BACKOFF_S", default=60.0)
RUN_TIME_LIMIT_S = env.int("RUN_TIME_LIMIT_S", default=600)
# A gateway call (executed in its request, runs.inline) waits between attempts at most this long;
# a longer backoff (a provider's Retry-After, say) fails the call at once with the provider's error.
INLINE_RETRY_MAX_WAIT_S = env.float("INLINE_RETRY_MAX_WAIT_S", default=10.0)
# A running run's claim lapses this long after its worker last renewed it (every third of it); then
# recovery, or a redelivered message, gives the run to another worker (runs.leases).
RUN_LEASE_S = env.float("RUN_LEASE_S", default=30.0)
# A queued run whose message the broker never took (it was down) is sent by recovery after this long.
RUN_RELAY_AFTER_S = env.float("RUN_RELAY_AFTER_S", default=5.0)
# A queued run whose message the broker took but nobody consumed for this long is sent again (the
# broker lost it). Raise it above the longest backlog you expect: until then a duplicate is sent.
RUN_RECOVER_QUEUED_AFTER_S = env.int("RUN_RECOVER_QUEUED_AFTER_S", default=300)
# Every worker runs a recovery pass this often (runs.recovery); 0 turns the loop off.
RUN_RECOVER_INTERVAL_S = env.float("RUN_RECOVER_INTERVAL_S", default=15.0)
RUN_WAIT_MAX_S = env.int("RUN_WAIT_MAX_S", default=60)
# A `?wait=` is woken when its run finishes (runs.notify); it also reads the run this often, in case
# that notification was lost (Redis restarting), so a lost one delays the answer by at most this.
RUN_WAIT_POLL_S = env.float("RUN_WAIT_POLL_S", default=1.0)
# With no REDIS_URL the web process runs a Dramatiq worker in a thread (the embedded default).
EMBEDDED_WORKER = env.bool("EMBEDDED_WORKER", default=not REDIS_URL)
EMBEDDED_WORKER_THREADS = env.int("EMBEDDED_WORKER_THREADS", default=2)

# The Retry-After of a 503 when the database or Redis (broker and cache) is unreachable.
UNAVAILABLE_RETRY_AFTER_S = env.int("UNAVAILABLE_RETRY_AFTER_S", default=5)

# Guardrails. A run reserves its maximum cost against its budgets; with no `max_tokens` in its params
# the completion is bounded by this many tokens for that reservation.
BUDGET_DEFAULT_MAX_TOKENS = env.int("BUDGET_DEFAULT_MAX_TOKENS", default=4096)
# Run tokens per API key and minute (0: no limit); APIKey.tokens_per_minute overrides it per key.
RATE_LIMIT_TOKENS_PER_MINUTE = env.int("RATE_LIMIT_TOKENS_PER_MINUTE", default=0)

# Request rate limits per API key (or per client IP without a valid key): "N/s", "N/m", "N/h" or "N/d".
# A key's own rate_limit / run_rate_limit (set by staff) overrides the first two. See accounts.ratelimit.
RATE_LIMIT_ENABLED = env.bool("RATE_LIMIT_ENABLED", default=True)
RATE_LIMIT_REQUESTS = env.str("RATE_LIMIT_REQUESTS", default="600/m")
RATE_LIMIT_RUNS = env.str("RATE_LIMIT_RUNS", default="60/m")  # POST /api/v1/runs and /api/v1/run
RATE_LIMIT_ANON = env.str("RATE_LIMIT_ANON", default="60/m")
# Peers (IPs or CIDRs, e.g. the load balancer) whose X-Forwarded-For names the client; empty: none.
RATE_LIMIT_TRUSTED_PROXIES = env.list("RATE_LIMIT_TRUSTED_PROXIES", default=[])

# Prometheus /metrics. With no METRICS_TOKEN only loopback clients may scrape it.
METRICS_ENABLED = env.bool("METRICS_ENABLED", default=True)
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

# Webhooks. Endpoints resolving to loopback/private/link-local/reserved addresses are refused (at
# registration and again before every delivery) unless this is on: for local development and tests.
WEBHOOKS_ALLOW_PRIVATE = env.bool("WEBHOOKS_ALLOW_PRIVATE", default=False)
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=5)
WEBHOOK_TIMEOUT_S = env.float("WEBHOOK_TIMEOUT_S", default=10.0)
WEBHOOK_RETRY_BASE_BACKOFF_S = env.float("WEBHOOK_RETRY_BASE_BACKOFF_S", default=30.0)
WEBHOOK_RETRY_MAX_BACKOFF_S = env.float("WEBHOOK_RETRY_MAX_BACKOFF_S", default=3600.0)
# A pending delivery this many seconds overdue (its message lost: the broker was down at commit, or a
# worker died mid-attempt) is sent again by webhooks.services.webhook_deliveries_recover.
WEBHOOK_RECOVER_AFTER_S = env.float("WEBHOOK_RECOVER_AFTER_S", default=300.0)
# Fernet keys (comma-separated) that encrypt webhook signing secrets at rest, so a database dump alone
# cannot forge deliveries. The first encrypts, every one decrypts: rotate by putting a new key first,
# running `manage.py webhook_secrets reencrypt`, then dropping the old key. Unset: one key derived from
# SECRET_KEY with HKDF-SHA256 (webhooks.secrets.derived_encryption_key), so nothing is needed to start,
# but changing SECRET_KEY then needs the old derived key listed here. Set it in production.
FIELD_ENCRYPTION_KEYS = [key.strip() for key in env.list("FIELD_ENCRYPTION_KEYS", default=[]) if key.strip()]

# Batches (runs.batch_services): items per batch, the size of an uploaded JSONL/CSV file (413 above it; the
# upload is spooled to disk past FILE_UPLOAD_MAX_MEMORY_SIZE and read line by line), how many bad
# rows a refused batch reports, and the wait before dispatching again after a 429 without Retry-After.
BATCH_MAX_ITEMS = env.int("BATCH_MAX_ITEMS", default=100_000)
BATCH_UPLOAD_MAX_BYTES = env.int("BATCH_UPLOAD_MAX_BYTES", default=100 * 1024 * 1024)
BATCH_MAX_REPORTED_ERRORS = env.int("BATCH_MAX_REPORTED_ERRORS", default=50)
BATCH_THROTTLE_RETRY_S = env.float("BATCH_THROTTLE_RETRY_S", default=10.0)

# Optional Weights & Biases export of finished runs (`manage.py runs_export_wandb`); off when unset.
WANDB_PROJECT = env.str("WANDB_PROJECT", default="")
WANDB_ENTITY = env.str("WANDB_ENTITY", default="")
WANDB_MODE = env.str("WANDB_MODE", default="online")  # "offline" writes files for a later `wandb sync`
WANDB_DIR = env.str("WANDB_DIR", default=str(BASE_DIR / "var" / "wandb"))

# Evaluation (evals): custom scorers, each a dotted path to a evals.scorers.base.Scorer subclass
# (comma-separated), registered next to the built-in ones under the class's `name`.
EVALS_SCORERS = env.list("EVALS_SCORERS", default=[])
