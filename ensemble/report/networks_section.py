"""The report's "Networks shipped" section: holdout AUC against the networks the exported model holds.

Drawn from metrics.json's "networks" block (ensemble.fit.budget): the mean of the top k members on
the untouched holdout for every k, and where the shipped ensemble stands on that curve.
"""
from __future__ import annotations

import html
from typing import Any

from matplotlib.figure import Figure

from .figures import png_data_uri
from .page import ReportSection

__all__ = ["networks_section"]


def networks_section(block: dict[str, Any]) -> ReportSection:
    shipped, budget, curve = block["shipped"], block.get("budget"), block.get("curve")
    said = (f"The exported model holds {shipped} network(s), each run on every image"
            + (f", within a budget of {budget} (--max-networks)." if budget else "; no budget was set (--max-networks)."))
    if not curve:
        return ReportSection(title="Networks shipped", id="networks", html=(
            f"<p>{html.escape(said)} No untouched holdout: the holdout AUC of each budget is not shown.</p>"))
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot()
    x, y = [r["networks"] for r in curve], [r["holdout_auc"] for r in curve]
    ax.plot(x, y, marker="o", color="#3b7dd8", label="mean of the top k members")
    ax.axvline(shipped, color="#d8703b", linestyle="--", label=f"shipped: {shipped}")
    ax.set(xlabel="networks shipped (fold models of the top k members, by rank)", ylabel="holdout AUC",
           title="Holdout AUC against networks shipped")
    ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    rows = "".join(f"<tr><td>{r['members']}</td><td>{r['networks']}</td><td>{r['holdout_auc']:.4f}</td></tr>"
                   for r in curve)
    return ReportSection(title="Networks shipped", id="networks", html=(
        f"<p>{html.escape(said)} The curve scores the plain mean margin of the top k members (by the sweep's "
        "rank, no TTA) on the untouched holdout, one point per k; on one small holdout its steps are noise, "
        "so read its trend, not its maximum.</p>"
        f'<figure class="narrow"><img id="fig-networks" alt="Holdout AUC against the number of networks shipped" '
        f'src="{png_data_uri(fig)}"><figcaption>Each point adds the next member by rank; the dashed line is '
        "the ensemble that ships.</figcaption></figure>"
        f'<table id="networks-curve"><thead><tr><th>members</th><th>networks</th><th>holdout AUC</th></tr>'
        f"</thead><tbody>{rows}</tbody></table>"))
