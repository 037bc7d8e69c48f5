"""trainers.audit: is this dataset fit to train on? Groups, duplicates, images labelled twice, a source shortcut.

    audit_into(RUN_DIR, cfg, prepare_data(cfg).found)   # at a command's door, from what prepare_data found
    report = audit_config(cfg)                          # `lungsweep audit`: find the data, then audit
    report = read_audit(RUN_DIR / AUDIT_FILE)         # the one reader of audit.json

report owns audit.json (its keys, writing and reading), shortcut the format-only
classifier, html the self-contained page. Names load on first use (PEP 562).
"""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "AUDIT_FILE": "report", "AUDIT_HTML": "report", "AUDIT_VERSION": "report", "audit_config": "report",
    "audit_found": "report", "audit_into": "report",
    "audit_dataset": "report", "audit_summary": "report", "format_audit": "report", "read_audit": "report",
    "write_audit": "report",
    "FEATURES": "shortcut", "SHORTCUT_WARN_AUC": "shortcut", "format_features": "shortcut", "shortcut_auc": "shortcut",
    "render_html": "html",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
