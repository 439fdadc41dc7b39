"""Sign-up, sign-in (password or e-mail code) and the caller's identity: /api/v1/auth/*."""
