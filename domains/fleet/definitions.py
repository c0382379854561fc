"""Code location of the fleet domain."""

from mesh_assets.definitions import build_domain

defs = build_domain(__file__)
