"""Who is calling: bearer credentials (access tokens verified locally, API keys resolved by auth
through a short-lived cache) turned into a `Principal`."""
