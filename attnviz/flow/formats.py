"""The formats a request's outputs are written in, by name, from the suffix of each file.

Nothing here imports numpy or torch: the command line builds its options from these.
"""

from attnviz.maps.kinds import FILE_FORMATS as DATA_FORMATS

IMAGE_FORMATS = ("png", "svg", "pdf")
FORMATS = (*IMAGE_FORMATS, "gif", *DATA_FORMATS, "html")  # what maps are written as
# explain draws one picture, saves its numbers, or writes the view of its head
EXPLANATION_FORMATS = (*IMAGE_FORMATS, *DATA_FORMATS, "html")
# The atlas of the heads: its records, its grids, or the page that opens on it.
ATLAS_FORMATS = ("json", *IMAGE_FORMATS, "html")
# An export draws every pair to each of these (a GIF is of one decoding), listed in this order.
EXPORT_FORMATS = tuple(fmt for fmt in FORMATS if fmt != "gif")
