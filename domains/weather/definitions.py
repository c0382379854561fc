"""Code location of the weather domain: hourly observations at the NYC airports."""

from mesh_assets import build_domain

defs = build_domain(__file__)
