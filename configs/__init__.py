"""Training configs (JSON), shipped as package data."""
