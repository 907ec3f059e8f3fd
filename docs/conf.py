"""Sphinx configuration for the osMarkets documentation."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "osMarkets"
author = "osMarkets developers"
copyright = "2026, osMarkets developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
html_theme = "alabaster"
exclude_patterns = ["_build"]
nitpicky = False
