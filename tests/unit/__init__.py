"""Pure logic of cache_backends/ and ecommerce/: no DynamoDB Local, database or gunicorn."""
