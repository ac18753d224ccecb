"""Data and tasks: examples, built-in tasks (a registry), user files, task formats, objectives."""
