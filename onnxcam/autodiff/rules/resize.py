"""Resize: separable, through interpolation matrices probed from the node itself."""
