"""Foundations with no framework dependencies: the Registry, stacked YAML configs, safe checkpoint reads."""
