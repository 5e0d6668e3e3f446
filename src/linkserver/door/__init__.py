"""Doors into linkserver from other ecosystems (Jupyter, wolframclient)."""
