"""vqbot engine package."""
