import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmops.settings")

application = get_wsgi_application()

from llmops import embedded_worker  # noqa: E402  (needs the app registry loaded above)

embedded_worker.start()
