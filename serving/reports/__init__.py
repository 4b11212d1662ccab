"""Reports of dashboards that leave the system on their own (PDF)."""
