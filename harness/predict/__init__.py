"""The memory model: count -> calibrate -> predict. Imports neither run/ nor report/."""
