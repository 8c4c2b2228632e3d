"""Running an experiment: the config and its one loader, the checks of the whole experiment before
any work (``validation``), building components from the registry and holding them to their
contracts while a run goes (``guards``), pretraining the reference, the RL trainer, the run folder,
metric logs, checkpoints, the non-finite guard, the device, and ``ddrl doctor``'s checks.

May import: the contracts, the kit, ``distributed`` and ``evaluation``. Never ``comparison`` or
the CLI.
"""
