"""The Explore page's parts: the embedding map, the label review."""
