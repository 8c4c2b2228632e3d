"""Built-in regularizers plugins."""
