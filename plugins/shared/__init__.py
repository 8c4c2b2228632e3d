"""Helpers that several built-in plugins share and that register nothing themselves (no hook):
the digits images and their fixed split, and the digits CNN that the digits metrics use as a
feature space. A plugin of any role may import from here; nothing here imports a plugin."""
