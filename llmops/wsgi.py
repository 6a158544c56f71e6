import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmops.settings")

django_application = get_wsgi_application()

from llmops import embedded_worker  # noqa: E402  (needs the app registry loaded above)
from llmops.parsers import ChunkedBodyMiddleware  # noqa: E402

# Chunked request bodies (no Content-Length) reach Django, and get their 413 when too large.
application = ChunkedBodyMiddleware(django_application)

embedded_worker.start()
