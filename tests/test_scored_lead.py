"""The one declaration of a scored lead (``leadscoring.scored_lead``): a field added there
reaches every path — the CSV and parquet files (column, order, type), the API answer and
its OpenAPI description, the default CRM field map and its validation, and the score
history's columns — with no other edit than the scorer computing its values.

The field is added by editing the declaration in a copy of the package and running the
real paths in a fresh interpreter on that copy, so a path that kept its own list of fields
(even one computed once at import) would not see it and the test would fail."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "02_Datos" / "01_Originales" / "Leads.csv"

#: Where the new field goes (before ``fit_score``: mid-order, not appended) and what it says.
ANCHOR = "    fit_score: Annotated["
DESCRIPTION = "Test-only field: risk that the lead churns, 0-100."
NEW_FIELD = f'''    churn_risk: Annotated[
        int | None,
        Field(description="{DESCRIPTION}"),
        Column("int16", crm="churn_risk_c", history="int16"),
    ] = None
'''

#: Runs in the copy: the scorer computes the new field (appended last, so the declared order
#: must come from the declaration), then every path is observed and reported as JSON.
PROBE = r"""
import json, sys
from pathlib import Path
import numpy as np, pandas as pd, pyarrow as pa, pyarrow.parquet as pq
from fastapi.testclient import TestClient

import leadscoring
from leadscoring.config import DEFAULT_CRM_FIELDS, ProjectConfig, ScoringConfig
from leadscoring.crm.scores import read_scores
from leadscoring.serving.batch import score_file
from leadscoring.serving.history import SCHEMA, append_scores_file, read_history
from leadscoring.serving.payloads import crm_payloads
from leadscoring.serving.scorer import Scorer
from leadscoring.serving.service import create_app

config, models, leads, out = sys.argv[1:]
out = Path(out)
cfg = ProjectConfig.model_validate(json.loads(Path(config).read_text()))
original = Scorer.score_columns

def score_columns(self, X, **kw):
    cols = original(self, X, **kw)
    cols["churn_risk"] = np.where(cols["score"] >= 30, 100 - cols["score"], np.nan)
    return cols

Scorer.score_columns = score_columns
score_file(cfg, leads, out / "s.csv", models_dir=models)
score_file(cfg, leads, out / "s.parquet", models_dir=models)
parquet = pq.read_schema(out / "s.parquet")
scores = read_scores(out / "s.parquet", cfg.data.id_column)
(out / "history").mkdir()  # a part written before the field existed
pq.write_table(
    pa.table({"lead_id": ["old-1"], "score": pa.array([5], pa.int16()), "model_version": ["v0"],
              "scored_at": pa.array([0], pa.timestamp("us", tz="UTC")), "job_id": ["old"]}),
    out / "history" / "part-00000000000000000001-0000000000000000-00000000.parquet",
)
append_scores_file(out / "history", out / "s.parquet", cfg.data.id_column)
history = read_history(out / "history")
client = TestClient(create_app(cfg, Scorer.load(cfg, models)))
answer = client.post("/score", json={cfg.data.id_column: "x1"}).json()
openapi = client.get("/openapi.json").json()
ref = openapi["paths"]["/score"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
response = openapi["components"]["schemas"][ref.rsplit("/", 1)[1]]
try:
    ScoringConfig(crm_fields={"score": "s", "churn_risk": "risk"})
    accepted = True
except ValueError:
    accepted = False
print(json.dumps({
    "package": leadscoring.__file__,
    "csv_columns": list(pd.read_csv(out / "s.csv", nrows=0).columns),
    "csv_churn": pd.read_csv(out / "s.csv", dtype=str, keep_default_na=False)["churn_risk"].tolist(),
    "parquet_columns": parquet.names,
    "parquet_type": str(parquet.field("churn_risk").type) if "churn_risk" in parquet.names else None,
    "scores": [[int(s), None if r != r else int(r)] for s, r in zip(scores["score"], scores.get("churn_risk", scores["score"]))],
    "api_keys": list(answer),
    "api_properties": list(response["properties"]),
    "api_description": response["properties"].get("churn_risk", {}).get("description"),
    "crm_default": DEFAULT_CRM_FIELDS,
    "crm_config_default": ScoringConfig().crm_fields,
    "crm_accepted": accepted,
    "payloads": [p["custom_fields"].get("churn_risk_c", "absent") for p in crm_payloads(scores, cfg.data.id_column)],
    "history": [[f.name, str(f.type)] for f in SCHEMA],
    "history_values": history.column("churn_risk").to_pylist() if "churn_risk" in history.column_names else None,
}))
"""


@pytest.fixture()
def extended(tmp_path: Path) -> Path:
    """A copy of the package whose declaration has one more field (``churn_risk``)."""
    copy = tmp_path / "pkg"
    shutil.copytree(ROOT / "leadscoring", copy / "leadscoring", ignore=shutil.ignore_patterns("__pycache__"))
    declaration = copy / "leadscoring" / "scored_lead.py"
    text = declaration.read_text(encoding="utf-8")
    assert text.count(ANCHOR) == 1, "the test's anchor is gone from the declaration: update ANCHOR"
    declaration.write_text(text.replace(ANCHOR, NEW_FIELD + ANCHOR), encoding="utf-8")
    return copy


def test_a_declared_field_reaches_every_path(extended, cfg, small_models, tmp_path):
    leads = tmp_path / "leads.csv"
    leads.write_text("".join(RAW.read_text(encoding="utf-8").splitlines(keepends=True)[:41]), encoding="utf-8")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(cfg.model_dump(mode="json")), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(extended)}
    res = subprocess.run(
        [sys.executable, "-c", PROBE, str(config), str(small_models), str(leads), str(tmp_path)],
        cwd=extended,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    seen = json.loads(res.stdout.strip().splitlines()[-1])
    assert Path(seen["package"]).is_relative_to(extended)  # the edited copy ran, not the checkout

    id_col = cfg.data.id_column
    order = [
        "probability",
        "score",
        "bucket",
        "recommended_action",
        "grade",
        "churn_risk",
        "fit_score",
        "engagement_score",
        "segment",
        "reasons",
        "previous_score",
        "trend",
        "model_version",
        "scored_at",
    ]
    # Files: the column in its declared place, its declared type, empty cells for no value.
    assert seen["csv_columns"] == [id_col, *order]
    assert seen["parquet_columns"] == [id_col, *order]
    assert seen["parquet_type"] == "int16"
    assert "" in seen["csv_churn"] and all(v == "" or v.isdigit() for v in seen["csv_churn"])
    # API: the answer carries it in the declared place; the OpenAPI schema describes it.
    assert seen["api_keys"] == ["lead_id", *order]
    # (the OpenAPI schema also lists experiment_group, which answers carry only with an experiment)
    assert seen["api_properties"] == ["lead_id", *order[:-2], "experiment_group", *order[-2:]]
    assert seen["api_description"] == DESCRIPTION
    # CRM: the default map names it, the configuration accepts it, payloads push it as a number.
    assert seen["crm_default"]["churn_risk"] == "churn_risk_c" == seen["crm_config_default"]["churn_risk"]
    assert seen["crm_accepted"] is True
    for (score, risk), pushed in zip(seen["scores"], seen["payloads"], strict=True):
        assert pushed == (None if risk is None else 100 - score) and (pushed is None or type(pushed) is int)
    assert None in seen["payloads"] and any(isinstance(p, int) for p in seen["payloads"])
    # Score history: flagged as kept, so it is a history column in its declared place.
    assert seen["history"] == [
        ["lead_id", "string"],
        ["score", "int16"],
        ["churn_risk", "int16"],
        ["experiment_group", "string"],
        ["model_version", "string"],
        ["scored_at", "timestamp[us, tz=UTC]"],
        ["job_id", "string"],
        ["inputs", "string"],
    ]
    # ... and an appended scores file carries its values into the score history.
    assert seen["history_values"] == [None, *(risk for _, risk in seen["scores"])]  # older parts still read


def test_the_declaration_gives_todays_outputs():
    """Derived names that other code and configurations rely on, as they were declared by hand."""
    import pyarrow as pa

    from leadscoring.config import DEFAULT_CRM_FIELDS, ScoringConfig
    from leadscoring.scored_lead import OPTIONAL_INT_FIELDS, SCORE_FIELDS, file_schema
    from leadscoring.serving.history import SCHEMA

    assert OPTIONAL_INT_FIELDS == ("fit_score", "engagement_score", "previous_score")
    assert DEFAULT_CRM_FIELDS["bucket"] == "score_bucket" and DEFAULT_CRM_FIELDS["score"] == "predictive_score"
    assert set(DEFAULT_CRM_FIELDS) == set(SCORE_FIELDS) - {"probability", "segment", "previous_score", "experiment_group"}
    with pytest.raises(ValueError, match=r"crm_fields: \['lead_id'\] are not score fields"):
        ScoringConfig(crm_fields={"lead_id": "id"})
    assert file_schema("id", text=True).field("reasons").type == pa.string()
    assert file_schema("id", text=False).field("reasons").type.value_type.names == [
        "variable",
        "label",
        "value",
        "effect",
        "evidence",
    ]
    assert SCHEMA.names == ["lead_id", "score", "experiment_group", "model_version", "scored_at", "job_id", "inputs"]
    with pytest.raises(ValueError, match="not fields of a scored lead"):
        file_schema("id", ["score", "mood"], text=False)
