"""Label conventions shared by the library and the application."""

IGNORE = -100  # the label of a position without loss (torch's and HF's cross-entropy ignore it)
