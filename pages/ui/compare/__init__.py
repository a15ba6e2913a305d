"""The Compare page's sections."""
