"""The lrpt application: data, training, evaluation and the command line, on the public API."""
