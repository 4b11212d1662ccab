"""GraphQL at /graphql: the REST API's questions, dashboards and alerts in one round trip (Strawberry)."""
