import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmops.settings")

django_application = get_wsgi_application()

from llmops import embedded_worker  # noqa: E402  (needs the app registry loaded above)
from llmops.parsers import ChunkedBodyMiddleware  # noqa: E402

# Chunked request bodies (no Content-Length) reach Django, and get their 413 when too large.
application = ChunkedBodyMiddleware(django_application)

embedded_worker.start()

# What the process has loaded so far (Django, the apps, their modules) lives as long as it does: moved
# out of the garbage collector's generations, so a full collection does not walk it on every request
# that triggers one (seen as the gateway's p99 at concurrency 1: bench/README.md).
gc.freeze()
