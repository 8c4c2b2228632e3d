"""Errors a user can fix. The CLI prints them without a traceback and exits with code 2."""


class UserError(Exception):
    """Bad input: a config, a file, a plugin name. The message says where and what would be right."""


class PluginError(UserError):
    """A plugin failed to load or registered a name twice."""
