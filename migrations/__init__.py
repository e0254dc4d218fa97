"""Alembic migration scripts for the clipcrop database (shipped in the wheel)."""
