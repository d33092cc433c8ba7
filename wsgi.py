"""WSGI entry point: ``gunicorn wsgi:app`` and ``flask --app wsgi ...`` from the repository root.

A bad setting ends either with one line that names it
(``ecommerce.config.exit_on_config_error``), not a traceback.
"""

from ecommerce import create_app
from ecommerce.config import exit_on_config_error

with exit_on_config_error():
    app = create_app()
