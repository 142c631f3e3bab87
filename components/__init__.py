"""One package per lifecycle step: its logic plus a thin ``component.py`` (the KFP component)."""
