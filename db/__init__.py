"""vqbot db package."""
