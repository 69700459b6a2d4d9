"""Command-line interface: thin commands over the public API."""
