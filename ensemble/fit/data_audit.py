"""metrics.json's "data_audit" block: how the patient groups were formed, and the audit's headline numbers
(read from the sweep's RUN_DIR/audit.json, written once per sweep by `launch`; trainers.audit owns that file)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from trainers.audit import AUDIT_FILE, audit_summary, read_audit
from trainers.errors import DataError

__all__ = ["audit_block", "grouping_statement"]


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
