"""What else is wrong with the data, in one list: outliers, underperforming groups, overlapping classes, label
health and the health check's findings, from a run or a dataset without one."""
