"""The data audit in the ensemble's report and metrics.json: how groups were formed, and the audit's
headline numbers (read from the sweep's RUN_DIR/audit.json, written once per sweep by `launch`)."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from trainers.audit import AUDIT_FILE, audit_summary, read_audit
from trainers.errors import DataError

from .report import ReportSection

__all__ = ["audit_block", "audit_section", "grouping_statement"]


def grouping_statement(config: dict[str, Any], rule: dict[str, str] | None = None) -> str:
    """How the patient groups that every split, fold and interval respects were formed.

    `rule`: the dataset's own record of it (audit.json groups.rule: rule, description, reason), which
    says what was really done; without it (an audit.json from before the key, or none), the sentence is
    read from the config.
    """
    if rule and rule.get("description"):
        how = f"{rule['description']} (rule {rule.get('rule', '?')!r}"
        how += f": {rule['reason']})" if rule.get("reason") else ")"
    else:
        how = (f"the first group of the regex {config['group_regex']!r} on each file name"
               if config.get("group_regex") else
               "the file name without its '%N' crop suffix and trailing slice or crop numbers (one group per "
               "paper page or patient; a manifest's group column or a DICOM PatientID wins)")
    merged = ("; near-duplicate images (perceptual hash) were then merged into one group, so no copy straddles "
              "two splits" if config.get("merge_duplicates", True) else "; near-duplicates were not merged")
    return f"Groups: {how}{merged}."


def audit_block(sweep_dir: Path | None, config: dict[str, Any]) -> dict[str, Any]:
    """metrics.json's "data_audit": the grouping rule and, when the sweep has one, the audit's headline numbers."""
    block: dict[str, Any] = {"groups": grouping_statement(config)}
    path = Path(sweep_dir) / AUDIT_FILE if sweep_dir is not None else None
    if path is not None and path.is_file():
        try:
            report = read_audit(path)
            block.update(audit_summary(report))
            block["groups"] = grouping_statement(config, report["groups"].get("rule"))
            block["warnings_text"] = report.get("warnings", [])
        except (DataError, KeyError, TypeError, AttributeError) as e:
            block["audit"] = f"{path} could not be read ({e}); run `lungsweep audit` on the data"
    else:
        block["audit"] = f"no {AUDIT_FILE} beside the sweep; run `lungsweep audit DATA` to check groups and shortcuts"
    return block


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
