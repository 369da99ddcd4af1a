"""Tools for the documentation: the README's pictures (render_pictures.py)."""
