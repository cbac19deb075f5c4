"""Storage: the declarative base, engine set-up per database, and Alembic migrations."""
