"""Retention compliance: the hash-chained audit log, legal holds, the inventory per tier, the rules and the report."""
