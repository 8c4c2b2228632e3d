"""Evaluation: scoring samples with the experiment's rewards, the evaluator that runs every metric
on fixed noise, Frechet distance and the target reweightings of held-out data, the energy
distance of weighted samples and the optima as reweightings of any base sample, and PNG outputs.

May import: the contracts, the kit and ``distributed``. Never the running or comparison layers
(the trainer uses the evaluator, not the other way round).
"""
