"""The app's extension objects, created unbound so any module can import them.

``create_app`` binds them to an app with ``init_app``; nothing connects at import.
"""

from __future__ import annotations

from flask_caching import Cache
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base so models use SQLAlchemy 2.0 typed ``Mapped`` columns."""


cache = Cache()
db = SQLAlchemy(model_class=Base)
