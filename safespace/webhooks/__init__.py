"""Webhooks: a community's HTTPS endpoints told when rounds open and close, stories are released and summaries published."""
