"""funrec_torchrl."""
