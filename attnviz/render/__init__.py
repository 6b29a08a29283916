"""Renderers: each module draws what it is given (a plan of heatmaps, maps, an explanation) to
one kind of output, and only draws.

``image`` writes PNG, SVG and PDF with matplotlib; ``animation`` the decoding steps as a GIF;
``terminal`` draws with rich; ``page`` writes one HTML page that holds every map, and
``index`` the page listing an export's files; ``explain_image`` and ``explain_terminal`` draw
one head step by step. None of them loads a model. :mod:`attnviz.flow.pipeline` picks the
renderer of each output.
"""
