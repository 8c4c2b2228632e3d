"""Errors a user can fix, and errors that stop a run. The CLI prints both without a traceback:
a ``UserError`` exits with code 2, a ``TrainingError`` with code 3."""


class UserError(Exception):
    """Bad input: a config, a file, a plugin name. The message says where and what would be right."""


class PluginError(UserError):
    """A plugin failed to load or registered a name twice."""


class TrainingError(Exception):
    """A run stopped: a non-finite reward, advantage, loss or gradient, a reward model that raised,
    a checkpoint that could not be written. The message names the iteration and the source; what
    was saved before is intact."""
