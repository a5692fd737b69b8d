"""Training the bundled demonstration model protiso-mini."""
