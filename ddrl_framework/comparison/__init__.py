"""Comparisons: ``ddrl compare`` (arms x betas x seeds under the same reference, seeds, data order
and evaluation noise) and ``ddrl report`` (tables and plots from the saved metrics).

May import: every layer below it (running, evaluation, the kit, distributed, the contracts).
"""
