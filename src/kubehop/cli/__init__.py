"""Thin command-line face over kubehop's packages."""
