"""Data preparation, training, evaluation and export of the landmark network."""
