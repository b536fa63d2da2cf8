"""``modelward evidence``: a B008 evidence pack rendered from the live cluster.

``model`` holds the pack (frozen values, one JSON shape), ``b008`` maps the control's activities
to policy sections, ``collect`` reads the cluster, ``render`` writes Markdown, HTML and JSON.
"""
