"""Review screens for guests and tracking events."""
