"""The run store: runs on disk (store), the split a run draws (split), and its curves while it trains (curves)."""
