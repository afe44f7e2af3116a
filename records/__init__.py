"""Staged data: guests, their children, tracking events, imports and review."""
