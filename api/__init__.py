"""The aiohttp application: routes, middlewares, JSON encoding."""
