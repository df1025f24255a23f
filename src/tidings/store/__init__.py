"""Storage: SQLAlchemy Core tables, Alembic migrations and queries (SQLite, PostgreSQL)."""
