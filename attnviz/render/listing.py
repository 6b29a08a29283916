"""Each query's strongest keys as plain text: for logs, and for copying into notes."""

from __future__ import annotations

from attnviz.views import Plan, top_keys


def top_k_text(plan: Plan, count: int) -> str:
    """For every panel of ``plan``, a heading, then a line per query: its position and label,
    then its ``count`` strongest keys (masked keys never), largest first, each as
    ``label (position) weight``. Positions count in the whole sequence, windows included.

    Example line (cross-attention)::

        0 <bos> → les: the (0) 0.912, small (1) 0.041, <eos> (8) 0.020
    """
    lines = []
    if plan.caption:
        lines.append(plan.caption)
    for panel in plan.panels:
        if lines:
            lines.append("")
        lines.append(f"{panel.title}: the {count} strongest keys of each query "
                     "(key label (position) weight)")
        keys = panel.key_labels
        for row, strongest in enumerate(top_keys(panel, count)):
            listed = ", ".join(f"{keys[column]} ({panel.key_start + column}) {weight:.3f}"
                               for column, weight in strongest)
            lines.append(f"{panel.query_start + row} {panel.query_label(row)}: {listed}")
    return "\n".join(lines) + "\n"
