"""The way of every request: :mod:`.pipeline`."""
