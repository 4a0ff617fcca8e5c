"""The HTML report: a page of sections that each feature contributes to ``gatelab tour``."""

from .page import Section, TourContext, render_page

__all__ = ["Section", "TourContext", "render_page"]
