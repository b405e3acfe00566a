"""Runnable examples: a FastAPI resource server and a browser SPA in cookie mode."""
