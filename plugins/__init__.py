"""Built-in plugins of ddrl-framework, registered through the ``ddrl_framework`` entry-point group."""
