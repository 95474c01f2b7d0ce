"""Datastores and image-set life cycle."""
