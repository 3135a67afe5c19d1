"""Translators between wire formats, one module per direction: ``<input>_<output>``."""
