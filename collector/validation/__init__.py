"""Validation of computed staging against expert (polysomnography) stages: readers, runs, statistics."""
