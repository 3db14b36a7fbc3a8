"""PDFs in, pages and labelled blocks out: sources (folders, tar shards, URLs), pool rules, rendering (the only
PyMuPDF importer), page text, layout, layout evaluation and the layout viewer, segments.
"""
