"""Data and tasks: datasets (built-in and user files), task templates and objectives, metrics."""
