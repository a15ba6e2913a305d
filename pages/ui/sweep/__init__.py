"""The Sweep page's parts: the form and the charts."""
