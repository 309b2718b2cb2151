"""TG-MATL: task-guided multi-annotation triplet learning."""
__version__ = "0.1.0"
