"""audit.json as one self-contained HTML page: tables and one embedded figure."""
from __future__ import annotations

import base64
import html
import io
from typing import Any, Sequence

__all__ = ["render_html"]

_STYLE = """body{font:14px/1.4 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}.warn{color:#a15c00}.err{color:#b00020;font-weight:bold}code{font-size:13px}"""
_MAX_ROWS = 100


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows[:_MAX_ROWS])
    more = f"<p>{len(rows) - _MAX_ROWS} more row(s) in audit.json</p>" if len(rows) > _MAX_ROWS else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def _figure(report: dict[str, Any]) -> str:
    """Histogram of each image's nearest-neighbour pHash distance, with the merge threshold."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return ""
    counts = report["near_duplicates"]["nearest_histogram"]
    fig, ax = plt.subplots(figsize=(6, 2.6), dpi=100)
    ax.bar(range(len(counts)), counts, width=1.0, color="#4a78a8")
    ax.axvline(report["settings"]["max_distance"] + 0.5, color="#b00020", ls="--", label="merge threshold")
    last = max((i for i, c in enumerate(counts) if c), default=10)
    ax.set_xlim(-0.5, last + 1.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("bits to the nearest other image (pHash)")
    ax.set_ylabel("images")
    ax.legend(frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return f'<img alt="nearest-neighbour distances" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _rule(rule: dict[str, str] | None) -> str:
    if not rule:  # an audit.json written before groups.rule
        return ""
    return (f"<p>Rule <code>{html.escape(rule['rule'])}</code>: {html.escape(rule['description'])}. "
            f"Why: {html.escape(rule['reason'])}.</p>")


def render_html(report: dict[str, Any]) -> str:
    ds, nd, sp, sc = report["dataset"], report["near_duplicates"], report["split"], report["shortcut"]
    before, after = report["groups"]["before_merge"], report["groups"]["after_merge"]
    auc = "n/a" if sc["auc"] is None else f"{sc['auc']:.3f}"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>lungsweep audit</title><style>{_STYLE}</style>"
        f"</head><body><h1>Dataset audit</h1><p><code>{html.escape(ds['root'])}</code>: {ds['images']} images, "
        f"positive class {html.escape(ds['positive'])}, group_regex {html.escape(repr(ds['group_regex']))}</p>",
        *(f"<p class='err'>error: {html.escape(e)}</p>" for e in report["errors"]),
        *(f"<p class='warn'>warning: {html.escape(w)}</p>" for w in report["warnings"]),
        "<h2>Summary</h2>",
        _table(["figure", "value"], [
            ["near-duplicate pairs (pHash within %d bits)" % report["settings"]["max_distance"], nd["count"]],
            ["... of them across classes", nd["cross_class"]],
            ["exact duplicate pairs", report["exact_duplicates"]["count"]],
            ["images labelled twice (error)", len(report["cross_class_duplicates"])],
            ["pairs straddling the split of the groups as given", sp["straddling"]],
            ["... after merging near-duplicates", sp["straddling_after_merge"]],
            ["shortcut AUC, format features only (warn above 0.7)", auc],
        ]),
        "<h2>Groups per class</h2>",
        _rule(report["groups"].get("rule")),
        _table(["class", "images", "groups as named", "groups after merging", "singleton share", "largest group"], [
            [c, s["images"], before[c]["groups"], s["groups"], f"{s['singleton_share']:.0%}",
             f"{s['largest_group']} ({s['largest_group_size']})"] for c, s in after.items()
        ]),
        _figure(report),
        "<h2>Near-duplicate pairs</h2>",
        _table(["a", "b", "bits", "same group", "across classes"],
               [[p["a"], p["b"], p["distance"], p["same_group"], p["cross_class"]] for p in nd["pairs"]]),
        "<h2>Pairs that straddle the split (groups as given)</h2>",
        f"<p>{html.escape(sp['error'])}</p>" if sp["error"] else "",
        _table(["a", "b", "split of a", "split of b", "bits"],
               [[p["a"], p["b"], p["split_a"], p["split_b"], p["distance"]] for p in sp["pairs"]]),
        "<h2>Exact duplicates</h2>",
        _table(["a", "b", "identical", "across classes"],
               [[p["a"], p["b"], p["kind"], p["cross_class"]] for p in report["exact_duplicates"]["pairs"]]),
        "<h2>Shortcut check</h2>",
        f"<p>{html.escape(sc['model'])}, {sc['folds']}-fold StratifiedGroupKFold on {sc['images']} images; "
        f"features: {html.escape(', '.join(sc['features']))}.</p>",
        f"<p>{html.escape(sc['error'])}</p>" if sc.get("error") else "",
        f"<p>audit took {report['seconds']:.1f} s</p></body></html>\n",
    ]
    return "".join(parts)
