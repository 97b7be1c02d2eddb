"""Serving: the monomodal SavedModel export for TF Serving (``export``). Imports
``experiments`` and below."""
