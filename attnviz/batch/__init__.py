"""Many requests at once: an export's lines, each drawn to its own files, on worker processes."""
