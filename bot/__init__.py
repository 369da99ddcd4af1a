"""vqbot bot package."""
