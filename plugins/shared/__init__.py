"""Helpers that several built-in plugins share and that register nothing themselves (no hook):
the digits images and their fixed split, the digits CNN that the digits metrics use as a
feature space, and the solvable benchmark's closed forms (a Gaussian mixture, its quadratic tilt). A plugin of any role may import from here; nothing here imports a plugin."""
