"""The data track: the training data is the variable (docs/datatrack.md)."""
