"""The categories resource: views (HTTP), repository (SQL), cache_policy (what to cache)."""

from ecommerce.categories.views import bp

__all__ = ["bp"]
