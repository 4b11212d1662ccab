"""Tier movers: hot -> warm -> cold per UTC day, the cold daily files, and the retention purge."""
