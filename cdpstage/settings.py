"""The only settings module: everything comes from the environment (see .env.example)."""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from cdpstage import dbconfig

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    """Read a string; an empty variable counts as unset."""
    return os.environ.get(name, "").strip() or default


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be 1/0, true/false, yes/no or on/off.")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number.") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def _missing(name: str) -> str:
    raise ImproperlyConfigured(f"{name} is not set.")


DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it, or run with DJANGO_DEBUG=1 for development."
        )
    # Development only: DEBUG gets a throw-away key.
    SECRET_KEY = "insecure-development-key-not-for-production-use-" + "x" * 20

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "cdpstage.apps.CdpStageAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_rq",
    "axes",
    "csp",
    "cdpstage",
    "records",
    "batches",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Before anything reads the body (CSRF reads POST in process_view, after every __call__).
    "cdpstage.middleware.RequestLimitsMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "cdpstage.urls"
WSGI_APPLICATION = "cdpstage.wsgi.application"
ASGI_APPLICATION = "cdpstage.asgi.application"

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

# The app role (DATABASE_URL): web, workers and commands. It owns nothing and may not change
# the schema or the audit trail's guards (cdpstage/dbconfig.py, docs/security.md).
DATABASES = {
    "default": dj_database_url.parse(dbconfig.app_url(), conn_max_age=60, conn_health_checks=True)
}
# Who connects to that database as which role: the app role's credentials, and the owner role's
# (DATABASE_OWNER_URL), which `migrate` and `flush` use instead (cdpstage.dbroles.as_owner). Kept
# apart from DATABASES because tests and those commands switch the live connection's.
DATABASE_APP = dbconfig.credentials(DATABASES["default"])
_owner = dbconfig.parse(dbconfig.owner_url())
if _owner["NAME"] != DATABASES["default"]["NAME"]:
    raise ImproperlyConfigured("DATABASE_OWNER_URL must name the same database as DATABASE_URL.")
DATABASE_OWNER = dbconfig.credentials(_owner)
# A second connection to the same database (autocommit) for an import run's progress and
# lease, written while the run's data transaction is still open (records.services.imports).
DATABASES["progress"] = {**DATABASES["default"], "TEST": {"MIRROR": "default"}}
# Lets parallel test runs (several developers or CI jobs on one server) use separate databases.
if env_str("DJANGO_TEST_DATABASE_NAME"):
    DATABASES["default"]["TEST"] = {"NAME": env_str("DJANGO_TEST_DATABASE_NAME")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Login throttling (django-axes): after DJANGO_LOGIN_FAILURE_LIMIT failed logins for one username
# from one address, that pair is locked out for DJANGO_LOGIN_COOLOFF_MINUTES. The database
# holds the attempts, so every web process sees them; `manage.py axes_reset` lifts a lockout.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("DJANGO_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("DJANGO_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "admin/login_locked_out.html"

# Sessions end after DJANGO_SESSION_IDLE_MINUTES without a request (each request renews the
# cookie) and when the browser closes, instead of Django's two weeks.
SESSION_COOKIE_AGE = env_int("DJANGO_SESSION_IDLE_MINUTES", 30) * 60
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True

# Content-Security-Policy (django-csp): only our own scripts, plus inline ones that carry the
# request's nonce (templates/admin/records/importrun/change_form.html). Styles allow inline:
# the admin's and our templates use style attributes, which a nonce cannot cover.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles")))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("DJANGO_MEDIA_ROOT", str(BASE_DIR / "media")))
# Uploaded sources, error reports, batch files and CDP's error logs. `filesystem` keeps them
# under MEDIA_ROOT (one host); `s3` puts them in an S3-compatible bucket that every host's
# workers share (docs/operations.md). Credentials are boto3's own AWS_ACCESS_KEY_ID /
# AWS_SECRET_ACCESS_KEY (or an instance role), never a setting.
STORAGE_BACKEND = env_str("DJANGO_STORAGE_BACKEND", "filesystem")
if STORAGE_BACKEND == "filesystem":
    DEFAULT_STORAGE = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
elif STORAGE_BACKEND == "s3":
    DEFAULT_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("DJANGO_S3_BUCKET") or _missing("DJANGO_S3_BUCKET"),
            # Empty: AWS itself; else the S3-compatible server (MinIO, Ceph, a test server).
            "endpoint_url": env_str("DJANGO_S3_ENDPOINT_URL") or None,
            "region_name": env_str("DJANGO_S3_REGION") or None,
            "location": env_str("DJANGO_S3_PREFIX"),
            "addressing_style": env_str("DJANGO_S3_ADDRESSING_STYLE") or None,
            # Names are unique per batch attempt; never overwrite what was approved or sent.
            "file_overwrite": False,
            "default_acl": None,
            # Files are served by the admin's own views, never by a public bucket URL.
            "querystring_auth": True,
            # A download spools to disk past this size (0 would keep a 50 MB file in memory).
            "max_memory_size": 2_621_440,
        },
    }
else:
    raise ImproperlyConfigured("DJANGO_STORAGE_BACKEND must be 'filesystem' or 's3'.")
STORAGES = {
    "default": DEFAULT_STORAGE,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Big files go to disk, not memory, while they are uploaded; none over DJANGO_UPLOAD_MAX_MB
# (cdpstage.middleware refuses it from its Content-Length, before a byte is read; the web
# server in front should have the same limit, e.g. nginx client_max_body_size).
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
UPLOAD_MAX_BYTES = env_int("DJANGO_UPLOAD_MAX_MB", 1024) * 1_000_000
# Forms without files (and everything before login): Django's 2.5 MB default, explicitly.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
# Uploaded files and built batch files: owner read/write only (plus the group for folders).
FILE_UPLOAD_PERMISSIONS = 0o600
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o750
DATA_UPLOAD_MAX_NUMBER_FIELDS = 10_000

# Where people reach the admin: links in emails are built on it.
SITE_URL = env_str("DJANGO_SITE_URL", "http://127.0.0.1:8000").rstrip("/")

EMAIL_BACKEND = env_str("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DJANGO_DEFAULT_FROM_EMAIL", "cdp-stage@localhost")
EMAIL_HOST = env_str("DJANGO_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("DJANGO_EMAIL_PORT", 25)

# Behind HTTPS in production: `manage.py check --deploy` is clean with DJANGO_SECURE=1.
SECURE = env_bool("DJANGO_SECURE", False)
SESSION_COOKIE_SECURE = SECURE
CSRF_COOKIE_SECURE = SECURE
SECURE_SSL_REDIRECT = SECURE
SECURE_HSTS_SECONDS = 31_536_000 if SECURE else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE
SECURE_HSTS_PRELOAD = SECURE
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if SECURE else None
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# DEBUG's error page (and error mails) mask the passwords of DATABASE_URL, REDIS_URL and any
# other URL, wherever on the page they appear.
DEFAULT_EXCEPTION_REPORTER = "cdpstage.dsn.DsnMaskingExceptionReporter"

# Redis + RQ. JSON serializer everywhere (never pickle): job arguments are ids only.
# A password goes in the URL (`redis://:password@host:6379/0`, or `redis://user:password@…`
# with Redis ACLs); `rediss://` connects over TLS and verifies the server's certificate
# against the system's CAs, or `?ssl_ca_certs=/path/ca.pem` (redis-py reads it from the URL).
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
RQ_JSON_SERIALIZER = "rq.serializers.JSONSerializer"
# One queue per worker process (see docs/design/rq-crash-semantics.md §7.1: a multi-queue worker
# can lose a job in the dequeue window).
RQ_QUEUE_NAMES = ("imports", "batches")
# Job timeouts are a last resort (leases and the reconciler handle dead workers); an import of
# tens of millions of rows runs for hours, a batch step for minutes.
RQ_JOB_TIMEOUTS = {"imports": 12 * 3600, "batches": 3600}
RQ_QUEUES = {
    name: {
        "URL": REDIS_URL,
        "DEFAULT_TIMEOUT": RQ_JOB_TIMEOUTS[name],
        "SERIALIZER": RQ_JSON_SERIALIZER,
    }
    for name in RQ_QUEUE_NAMES
}
RQ = {"WORKER_CLASS": "cdpstage.worker.CdpStageWorker", "JOB_CLASS": "cdpstage.worker.CdpStageJob"}
# The only modules whose public functions a worker runs (cdpstage.worker.job_function).
RQ_JOB_MODULES = ("records.jobs", "batches.jobs")
# The job dashboard's admin entry (cdpstage.admin.jobs): Operators only.
RQ_SHOW_ADMIN_LINK = True
# Seconds between a worker's maintenance passes (RQ registry cleanup + our reconcilers).
RQ_MAINTENANCE_INTERVAL = env_int("RQ_MAINTENANCE_INTERVAL", 10)
# Dotted paths of idempotent functions every worker runs during maintenance: they re-enqueue
# work stuck past its lease, so a job lost with a killed worker or a flushed Redis is redone.
RECONCILERS = [
    "records.jobs.reconcile_import_runs",
    "batches.jobs.reconcile_batches",
    "records.jobs.purge_expired_records",
]
# Retention: days after delivery at which a record's personal data (and the import and batch
# files) are cleared by the workers' scheduled purge; 0 turns the scheduled purge off
# (`manage.py records_purge --delivered-before DAYS` works either way).
RETENTION_DELIVERED_DAYS = env_int("RETENTION_DELIVERED_DAYS", 0)
# Seconds between scheduled purges, whatever the number of workers (a Redis key elects one).
RETENTION_RUN_INTERVAL = env_int("RETENTION_RUN_INTERVAL", 3600)

# Sitecore CDP Batch API.
CDP_BASE_URL = env_str("CDP_BASE_URL", "https://api-engage-eu.sitecorecloud.io")
CDP_CLIENT_KEY = env_str("CDP_CLIENT_KEY")
CDP_API_TOKEN = env_str("CDP_API_TOKEN")
# Hosts (`host` or `host:port`, https only) that CDP's pre-signed upload and error-log URLs may
# point at, besides CDP_BASE_URL's own (which also covers the sandbox in development). The
# defaults are the S3 hosts of docs/design/cdp-batch-api.md section 1.3; a tenant in another region
# adds its bucket's host (a refused file's reason names it).
CDP_ALLOWED_HOSTS = env_list(
    "CDP_ALLOWED_HOSTS",
    "sitecore-batch-service-production-eu-west-1.s3.eu-west-1.amazonaws.com,"
    "sitecore-batch-service-production-eu-west-1.s3.amazonaws.com",
)
CDP_IDENTITY_PROVIDERS = env_list("CDP_IDENTITY_PROVIDERS", "email,CRM_ID")
CDP_MAX_FILE_BYTES = env_int("CDP_MAX_FILE_BYTES", 50_000_000)
CDP_MAX_IN_FLIGHT = env_int("CDP_MAX_IN_FLIGHT", 1)
# Guest migrations sent to CDP per day (UTC): CDP's recommended ceiling is 200,000 guest
# profiles a day. Files beyond the day's allowance wait for the next (batches.services.allowance).
CDP_MIGRATION_DAILY_LIMIT = env_int("CDP_MIGRATION_DAILY_LIMIT", 200_000)
CDP_UPLOAD_CONTENT_TYPE = os.environ.get("CDP_UPLOAD_CONTENT_TYPE", "application/gzip").strip()
CDP_GZIP_CODEC = env_str("CDP_GZIP_CODEC", "isal")
CDP_GZIP_LEVEL = env_int("CDP_GZIP_LEVEL", 2)
CDP_HTTP_TIMEOUT = env_int("CDP_HTTP_TIMEOUT", 30)
CDP_POLL_INTERVALS = [int(s) for s in env_list("CDP_POLL_INTERVALS", "2,5,10,30,60")]
# Short and renewed every third by a heartbeat (cdpstage/leases.py): a dead worker's work
# resumes within a lease plus a maintenance pass, whatever the step's length.
CDP_LEASE_SECONDS = env_int("CDP_LEASE_SECONDS", 30)
CDP_MAX_ATTEMPTS = env_int("CDP_MAX_ATTEMPTS", 8)
# Seconds to wait before retry n of a failed CDP call (the last value repeats); a longer
# Retry-After from CDP wins.
CDP_RETRY_INTERVALS = [int(s) for s in env_list("CDP_RETRY_INTERVALS", "5,15,60,120,300")]

# Imports.
IMPORT_BATCH_ROWS = env_int("CDP_IMPORT_BATCH_ROWS", 5000)
IMPORT_MAX_CELL_CHARS = env_int("CDP_IMPORT_MAX_CELL_CHARS", 10_000)
# An import's error report lists this many lines, then counts the rest per code.
IMPORT_REPORT_MAX_LINES = env_int("CDP_IMPORT_REPORT_MAX_LINES", 10_000)
IMPORT_EXPORT_SKIP_ADMIN_LOG = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            # Masks URL passwords (a DSN in an exception message) in every line.
            "()": "cdpstage.dsn.DsnMaskingFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        }
    },
    "filters": {"rq_maintenance": {"()": "cdpstage.worker.MaintenanceNoiseFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["rq_maintenance"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("DJANGO_LOG_LEVEL", "INFO")},
    "loggers": {
        # urllib3 logs full URLs at DEBUG; pre-signed URLs carry signatures.
        "urllib3": {"level": "WARNING"},
    },
}
