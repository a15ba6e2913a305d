"""The Train page's parts: the New run form, the launch, the runs table and the monitor of one run."""
