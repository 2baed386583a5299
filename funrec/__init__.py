"""funrec."""
