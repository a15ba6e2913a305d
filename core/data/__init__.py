"""Photos in: scanning datasets, the one decoder, the decoded cache, thumbnails, label corrections and the
folders the app may read.
"""
