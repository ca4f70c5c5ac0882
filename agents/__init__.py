"""Shipped agents: behaviour policies and pretrained decision agents."""
