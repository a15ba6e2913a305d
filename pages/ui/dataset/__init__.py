"""The Dataset page's parts: adding a dataset, the health check, the caches on disk."""
