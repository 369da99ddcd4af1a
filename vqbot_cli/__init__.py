"""The vqbot command: the composition root that wires settings, db, bot and engine."""
