"""The app and the cache layers in-process, against DynamoDB Local, SQLite and PostgreSQL."""
