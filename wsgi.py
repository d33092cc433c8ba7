"""WSGI entry point: ``gunicorn wsgi:app`` and ``flask --app wsgi ...`` from the repository root."""

from ecommerce import create_app

app = create_app()
