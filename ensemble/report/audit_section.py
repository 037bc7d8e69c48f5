"""The report's "Data audit" section, drawn from metrics.json's "data_audit" block (ensemble.fit.data_audit)."""
from __future__ import annotations

import html
from typing import Any

from .page import ReportSection

__all__ = ["audit_section"]


def audit_section(block: dict[str, Any]) -> ReportSection:
    rows = []
    for key, label in (("groups_per_class_before_merge", "groups per class, as named"),
                       ("groups_per_class", "groups per class, after merging near-duplicates"),
                       ("singleton_share", "share of single-image groups"),
                       ("near_duplicate_pairs", "near-duplicate pairs"),
                       ("exact_duplicate_pairs", "exact duplicate pairs"),
                       ("straddling_pairs", "near-duplicate pairs across the default split, as named"),
                       ("cross_class_duplicates", "images labelled twice"),
                       ("shortcut_auc", "shortcut AUC (image format only, no lungs)")):
        if key in block:
            value = block[key]
            if isinstance(value, dict):
                value = ", ".join(f"{k}: {v:.0%}" if isinstance(v, float) else f"{k}: {v}" for k, v in value.items())
            elif isinstance(value, float):
                value = f"{value:.3f}"
            rows.append(f"<tr><th scope=\"row\">{html.escape(label)}</th><td>{html.escape(str(value))}</td></tr>")
    warnings = "".join(f'<p class="note">{html.escape(w)}</p>' for w in block.get("warnings_text", []))
    missing = f'<p class="note">{html.escape(block["audit"])}</p>' if "audit" in block else ""
    body = (f"<p>{html.escape(block['groups'])}</p>{missing}"
            + (f'<table id="audit">{"".join(rows)}</table>' if rows else "") + warnings)
    return ReportSection(title="Data audit", html=body, id="data-audit")
