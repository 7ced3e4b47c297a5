"""Command-line interface (``ncnnpass``)."""
