"""Bring a running lab over: the seed systems' databases and device lists (CSV)."""
