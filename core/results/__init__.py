"""What a finished run tells: metrics, stored arrays, calibration, confusion, the embedding map, label issues,
Grad-CAM, comparison, and the background tasks that compute them."""
