"""Scorers: detection, fuzzing, simulation (sentences and predictors), embedding, surprisal."""

SCORERS = ("detection", "fuzz", "simulation", "embedding", "surprisal")
