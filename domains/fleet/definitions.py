"""Code location of the fleet domain."""

from mesh_assets import build_domain

defs = build_domain(__file__)
