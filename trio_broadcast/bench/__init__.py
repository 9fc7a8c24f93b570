"""The load generator behind ``trio-broadcast bench`` (see :mod:`.run`)."""
