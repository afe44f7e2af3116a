"""Batches and their files, items and audit events."""
