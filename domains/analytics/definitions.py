"""Code location of the analytics domain."""

from mesh_assets.definitions import build_domain

defs = build_domain(__file__)
