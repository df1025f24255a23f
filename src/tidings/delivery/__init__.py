"""Delivery: the worker loop and the HTTP sender (aiohttp)."""
