"""Who is calling: tenants and their API keys, authentication, and per-key rate limits."""
