"""`mlbert report`: one self-contained HTML page that shows how good a model is, label by label.

page.py     arrays and settings in, the page as an HTML string out
plots.py    its figures (matplotlib, SVG)
templates/  the Jinja2 page, its style sheet and script
"""

from .page import ReportInput, build_context, confident_mistakes, make_report, per_label_rows

__all__ = ["ReportInput", "build_context", "confident_mistakes", "make_report", "per_label_rows"]
