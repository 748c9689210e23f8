"""Small shared utilities: atomic file writes and image grids/PNGs."""
