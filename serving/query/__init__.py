"""Dashboard questions: the query spec, which tier answers which range, the SQL of both dialects, the engine."""
