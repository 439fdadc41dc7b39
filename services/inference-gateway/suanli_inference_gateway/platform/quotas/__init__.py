"""Quotas with what is in use: /api/v1/quotas, and the admin route that sets one."""
