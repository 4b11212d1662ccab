"""The service layer: what the routes ask and what decides it (validation, cache, timeouts, versions).

Routes parse requests and shape responses; these services decide and raise domain errors, which
``serving.errors`` maps to HTTP statuses. Nothing here knows about HTTP.
"""
