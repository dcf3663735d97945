"""Served models, one class per task (`base.ServedModel` and its subclasses), and the registry that picks
the class for a card (`registry`)."""
