"""Environment specs (JSON), shipped as package data."""
