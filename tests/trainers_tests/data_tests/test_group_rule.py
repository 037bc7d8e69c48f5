"""The default group rule on common public file namings: it never lets one group swallow a class."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainers import TrainConfig, discover
from trainers.audit.html import render_html
from trainers.audit.report import audit_config, audit_summary, format_audit
from trainers.data.groups import SWALLOW_MIN_IMAGES, SWALLOW_SHARE

README = Path(__file__).resolve().parents[3] / "README.md"
KERMANY_REGEX = r"^(person\d+|(?:NORMAL2-)?IM-\d+)"  # the README's recipe, checked against it below


def _folder(root: Path, files: dict[str, list[str]]) -> Path:
    """Class folders of 8x8 noise images (discovery reads names only; the audit wants distinct pixels)."""
    rng = np.random.default_rng(0)
    for label, names in files.items():
        (root / label).mkdir(parents=True)
        for name in names:
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / label / name)
    return root


def _kermany() -> tuple[dict[str, list[str]], dict[str, str]]:
    normal = [f"IM-{p:04d}-{s:04d}.jpeg" for p in range(115, 125) for s in (1, 2)]
    normal += [f"NORMAL2-IM-{p}-0001.jpeg" for p in range(1427, 1432)]
    pneumonia = [f"person{p}_{kind}_{p * 3 + k}.jpeg" for p in range(1, 9) for k, kind in enumerate(("bacteria", "virus"))]
    pneumonia += [f"person{p}_bacteria_{p * 7}.jpeg" for p in range(1, 9)]
    return {"NORMAL": normal, "PNEUMONIA": pneumonia}, {
        "IM-0115-0001.jpeg": "IM-0115", "IM-0115-0002.jpeg": "IM-0115", "NORMAL2-IM-1427-0001.jpeg": "NORMAL2-IM-1427",
    }


KERMANY, KERMANY_NAMED = _kermany()

# layout, folders, group_regex, expected groups of some files, rule, warned
LAYOUTS = [
    ("covid-ct-qsr",
     {"CT_COVID": [f"2020.01.24.919183-p{k}-{j}.png" for k in range(10) for j in range(130, 133)],
      "CT_NonCOVID": [f"{k}%{j}.jpg" for k in range(60, 70) for j in range(1, 3)] + ["1029.png", "1030.png"]},
     None,
     {"2020.01.24.919183-p7-132.png": "2020.01.24.919183-p7", "63%1.jpg": "63", "63%2.jpg": "63", "1029.png": "1029"},
     "name", False),
    ("covid_N, 50 per class",
     {"CT_COVID": [f"covid_{i}.png" for i in range(50)], "CT_NonCOVID": [f"noncovid_{i}.png" for i in range(48)]
      + ["63%1.png", "63%2.png"]},
     None,
     {"covid_0.png": "covid_0", "covid_49.png": "covid_49", "noncovid_7.png": "noncovid_7", "63%1.png": "63",
      "63%2.png": "63"},
     "stem", True),
    ("COVID-19 Radiography Database",
     {"COVID": [f"COVID-{i}.png" for i in range(1, 31)], "Normal": [f"Normal-{i}.png" for i in range(1, 31)]},
     None,
     {"COVID-1.png": "COVID-1", "Normal-30.png": "Normal-30"},
     "stem", True),
    ("Kermany, default",
     KERMANY, None,
     {**KERMANY_NAMED, "person1_bacteria_3.jpeg": "person1_bacteria_3", "person1_virus_4.jpeg": "person1_virus_4"},
     "name+1", True),
    ("Kermany, the README's group_regex",
     KERMANY, KERMANY_REGEX,
     {**KERMANY_NAMED, "person1_bacteria_3.jpeg": "person1", "person1_virus_4.jpeg": "person1"},
     "group_regex", False),
    ("two trailing indices: scanner-run-patient-slice",
     {"CT_COVID": [f"ct-1-{p}-{s}.png" for p in range(8) for s in range(3)],
      "CT_NonCOVID": [f"ct-2-{p}-{s}.png" for p in range(8) for s in range(3)]},
     None,
     {"ct-1-0-0.png": "ct-1-0", "ct-1-0-2.png": "ct-1-0", "ct-2-7-1.png": "ct-2-7"},
     "name+2", True),
    ("small classes keep today's reading",
     {"CT_COVID": [f"covid_{i}.png" for i in range(SWALLOW_MIN_IMAGES - 1)],
      "CT_NonCOVID": [f"noncovid_{i}.png" for i in range(SWALLOW_MIN_IMAGES - 1)]},
     None,
     {"covid_0.png": "covid", "noncovid_18.png": "noncovid"},
     "name", False),
]


@pytest.mark.parametrize("layout, files, group_regex, expected, rule, warned", LAYOUTS, ids=[row[0] for row in LAYOUTS])
def test_groups_on_common_layouts(tmp_path, caplog, layout, files, group_regex, expected, rule, warned):
    ds = discover(data=_folder(tmp_path / "data", files), group_regex=group_regex)
    found = {Path(i).name: g for i, g in zip(ds.ids, ds.groups)}
    assert {name: found[name] for name in expected} == expected
    assert ds.grouping.rule == rule
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert bool(warnings) == warned
    if warned:
        assert f"read as {rule!r}" in warnings[0] and "swallowed" in warnings[0] and "group_regex" in warnings[0]
    for k, label in enumerate(ds.classes):  # whatever the rule, no class is swallowed
        in_class = [g for g, y in zip(ds.groups, ds.labels) if y == k]
        largest = max(in_class.count(g) for g in set(in_class))
        assert len(in_class) < SWALLOW_MIN_IMAGES or largest <= SWALLOW_SHARE * len(in_class), label


def test_warning_names_the_class_its_largest_group_and_its_share(tmp_path, caplog):
    ds = discover(data=_folder(tmp_path / "data", KERMANY))
    message = next(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "under the coarser reading 'name', class 'NORMAL' is swallowed: group 'IM' holds 20 of its 25 images (80%)" \
        in message
    assert "README.md" in message and "manifest" in message
    assert ds.grouping.reason in message and "IM-0115" in ds.grouping.description


def test_when_even_the_finest_reading_swallows_a_class_it_says_so(tmp_path, caplog):
    files = {"CT_COVID": [f"fig%{i}.png" for i in range(30)], "CT_NonCOVID": [f"b_{i}.png" for i in range(30)]}
    ds = discover(data=_folder(tmp_path / "data", files))
    assert ds.grouping.rule == "stem" and set(ds.groups[:30]) == {"fig"}  # crops of one figure stay together
    assert "even under 'stem', the finest reading, class 'CT_COVID' is swallowed" in ds.grouping.reason
    assert any("not to be trusted" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def test_manifest_groups_win_and_name_their_rule(tmp_path):
    data = _folder(tmp_path / "data", {"COVID": [f"COVID-{i}.png" for i in range(30)],
                                        "Normal": [f"Normal-{i}.png" for i in range(30)]})
    rows = ["path,label,group"] + [f"{p.relative_to(data)},{p.parent.name},patient{i % 12}"
                                   for i, p in enumerate(sorted(data.rglob("*.png")))]
    (data / "m.csv").write_text("\n".join(rows) + "\n")
    ds = discover(manifest=data / "m.csv")
    assert ds.grouping.rule == "manifest" and len(set(ds.groups)) == 12
    assert "60 image(s) grouped by the manifest's group column" in ds.grouping.description


def test_the_readme_recipe_is_the_tested_regex():
    text = README.read_text()
    section = text[text.index("### Groups on common public layouts"):]
    section = section[: section.index("\n### ", 1)]
    regexes = [r.replace(r"\|", "|") for r in re.findall(r"group_regex: '([^']+)'", section)]  # '\|': a table's pipe
    assert regexes == [KERMANY_REGEX]


def test_the_audit_reports_the_rule(tmp_path):
    report = audit_config(TrainConfig(data=str(_folder(tmp_path / "data", KERMANY)), progress=False))
    rule = report["groups"]["rule"]
    assert rule["rule"] == "name+1" and "'NORMAL' is swallowed" in rule["reason"]
    assert [line for line in format_audit(report).splitlines() if "groups by rule 'name+1': " in line]
    assert "Rule <code>name+1</code>" in render_html(report) and audit_summary(report)["group_rule"] == "name+1"
