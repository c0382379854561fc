"""Code location of the reference domain: airlines, airports and time zones."""

from mesh_assets import build_domain

defs = build_domain(__file__)
