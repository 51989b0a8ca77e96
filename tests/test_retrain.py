"""Retraining (champion vs challenger), the promoted model's own figures, the model set
archive and rollback. Models are the small ones of the ``small_models`` fixture, copied
into a temporary project."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from leadscoring import cli
from leadscoring.artifacts import (
    MODEL_SET,
    ModelIntegrityError,
    load_model,
    read_manifest,
    replace_model_set,
    save_model,
    sha256_file,
)
from leadscoring.config import load_config
from leadscoring.crm.outcomes import OutcomeRow, append_outcome_rows
from leadscoring.ingest.split import in_ids_digest
from leadscoring.loop.retrain import NotEnoughOutcomes, load_outcomes, outcomes_from_history, retrain, should_promote
from leadscoring.loop.versions import list_versions, rollback
from leadscoring.serving.history import append_scores
from leadscoring.serving.scorer import Scorer
from leadscoring.training.pipeline import preparation_steps
from leadscoring.training.rules import RuleScorer, load_rules

from .conftest import write_project

SCORE, SEGMENT, RULES = MODEL_SET
CHAMPION_VALIDATION = {
    "roc_auc": 0.9123,
    "average_precision": 0.8765,
    "brier": 0.1111,
    "log_loss": 0.3333,
    "gain_at_30pct": 0.6543,
    "base_rate": 0.376,
    "n": 1455,
}
CARD = "# Model card: lead scoring model\n\nchampion card\n\n## Caveats\n- the caveat the configuration asks for\n"


# -- the promotion rule, with hand numbers ----------------------------------------------------


@pytest.mark.parametrize(
    ("champion", "challenger", "tolerance", "promote"),
    [
        ({"roc_auc": 0.75, "brier": 0.25}, {"roc_auc": 0.625, "brier": 0.25}, 0.125, True),  # AUC drop == tolerance
        ({"roc_auc": 0.75, "brier": 0.25}, {"roc_auc": 0.5, "brier": 0.25}, 0.125, False),  # drop > tolerance
        ({"roc_auc": 0.80, "brier": 0.15}, {"roc_auc": 0.795, "brier": 0.15}, 0.005, True),  # decimal edge (float noise)
        ({"roc_auc": 0.80, "brier": 0.15}, {"roc_auc": 0.7949, "brier": 0.15}, 0.005, False),
        ({"roc_auc": 0.75, "brier": 0.25}, {"roc_auc": 0.75, "brier": 0.375}, 0.125, True),  # Brier rise == tolerance
        ({"roc_auc": 0.75, "brier": 0.25}, {"roc_auc": 0.75, "brier": 0.5}, 0.125, False),  # rise > tolerance
        ({"roc_auc": 0.80, "brier": 0.150}, {"roc_auc": 0.80, "brier": 0.155}, 0.005, True),
        ({"roc_auc": 0.80, "brier": 0.150}, {"roc_auc": 0.80, "brier": 0.1551}, 0.005, False),
        ({"roc_auc": 0.80, "brier": 0.15}, {"roc_auc": 0.90, "brier": 0.20}, 0.005, False),  # better AUC, worse Brier
        ({"roc_auc": 0.80, "brier": 0.15}, {"roc_auc": 0.80, "brier": 0.15}, 0.0, True),  # equal, no tolerance
        ({"roc_auc": 0.80, "brier": 0.15}, {"roc_auc": 0.80, "brier": 0.15}, -0.001, False),  # bar above equal
        ({"roc_auc": 0.80, "brier": 0.15}, {"roc_auc": float("nan"), "brier": 0.1}, 1.0, False),
        ({"roc_auc": 0.80, "brier": 0.15}, {"brier": 0.1}, 1.0, False),
    ],
)
def test_should_promote_at_the_tolerance_edge(champion, challenger, tolerance, promote):
    assert should_promote(champion, challenger, tolerance) is promote


# -- retrain, archive, rollback ----------------------------------------------------------------


def _strip(manifest: dict) -> dict:
    return {k: v for k, v in manifest.items() if k not in {"file", "sha256", "created_at", "versions", "python_implementation"}}


@pytest.fixture()
def project(tmp_path, small_models, cfg, sample, leads):
    """A project with all three models (the champion carrying validation/cv figures from a
    'full run'), a model card, and 400 new outcomes (ids + target, features separately)."""
    pcfg = load_config(write_project(tmp_path))
    models = pcfg.path("models_dir")
    shutil.copytree(small_models, models)
    champion, manifest = load_model(models / SCORE)
    save_model(
        champion,
        models / SCORE,
        **_strip(manifest),
        validation=CHAMPION_VALIDATION,
        validation_rows=1455,
        cv={"roc_auc": 0.9, "brier": 0.12, "folds": 5},
    )
    X, y = sample.drop(columns="compra"), sample["compra"]
    rules = Pipeline(
        [
            ("clean", preparation_steps(cfg)[0][1]),
            ("rules", RuleScorer(rules=load_rules(pcfg.path("rules_table")), yes_no=cfg.data.columns.yes_no)),
        ]
    )
    save_model(rules.fit(X, y), models / RULES, kind="rule_scorer", cv={"roc_auc": 0.8})
    (pcfg.path("docs_dir") / "model_card.md").write_text(CARD)
    new = leads[~leads["id"].isin(sample["id"])].head(400)
    feats, outcomes = tmp_path / "new_leads.csv", tmp_path / "outcomes.csv"
    new.drop(columns="compra").to_csv(feats, sep=";", index=False)
    new[["id", "compra"]].to_csv(outcomes, sep=";", index=False)
    return pcfg, outcomes, feats


def _shas(models) -> dict[str, str]:
    return {n: read_manifest(models / n)["sha256"] for n in MODEL_SET}


def test_promoted_model_carries_its_own_metrics_and_the_set_is_archived(project, leads):
    cfg, outcomes, feats = project
    models, card = cfg.path("models_dir"), cfg.path("docs_dir") / "model_card.md"
    before = _shas(models)
    seg_before, _ = load_model(models / SEGMENT)

    result = retrain(cfg, outcomes, feats, tolerance=1.0)  # tolerance 1: always promote, to test the mechanics
    assert result.promoted and result.new_leads == 400 and result.holdout_leads == 200
    assert "score" in set(result.drift["variable"]) and set(result.drift["level"]) <= {"stable", "watch", "alert"}
    assert len(pd.read_parquet(cfg.path("work_dir") / "history.parquet")) == len(leads)

    new = read_manifest(models / SCORE)
    assert new["retrained_from"] == before[SCORE] and new["sha256"] != before[SCORE]
    assert "validation" not in new and "cv" not in new and "validation_rows" not in new  # the champion's figures are gone
    m = new["metrics"]
    assert m["roc_auc"] == pytest.approx(result.challenger["roc_auc"]) and m["brier"] == pytest.approx(result.challenger["brier"])
    assert m["roc_auc"] != CHAMPION_VALIDATION["roc_auc"] and m["brier"] != CHAMPION_VALIDATION["brier"]
    assert m["rows"] == 200 and "held-out new leads" in m["measured_on"]
    assert new["retrain"]["champion_on_holdout"]["roc_auc"] == pytest.approx(result.champion["roc_auc"])
    assert new["model_name"] == "test" and new["features"]  # the recipe's description is kept

    # the whole previous set is archived in one folder, before anything was replaced
    (version,) = list_versions(cfg)
    assert result.archived == version
    # reasons' evidence and grades are re-learned on the retraining leads, never copied from the champion
    champion_manifest = read_manifest(version / SCORE)
    assert new["reasons"]["levels"] != champion_manifest["reasons"]["levels"]
    conversions = new["reasons"]["base_rate"] * new["training_rows"]
    assert abs(conversions - round(conversions)) < 1e-6  # a rate over exactly the retraining leads
    assert sum(new["grades"]["training_shares"]) == pytest.approx(1.0, abs=1e-3)
    assert new["group_validation_auc"] == {}  # validation figures belong to a full run
    for n in MODEL_SET:
        assert (version / n).is_file() and (version / n).with_suffix(".json").is_file()
        assert read_manifest(version / n)["sha256"] == before[n]
    assert (version / "model_card.md").read_text() == CARD

    # what depends on the data is refreshed: segment model refit (names kept), rules kept (fixed table)
    seg, seg_manifest = load_model(models / SEGMENT)
    assert seg_manifest["retrained_from"] == before[SEGMENT] and seg_manifest["sha256"] != before[SEGMENT]
    assert seg_manifest["training_rows"] == new["training_rows"] and seg.names_ == seg_before.names_ == {1: "A", 2: "B", 3: "C"}
    assert read_manifest(models / RULES)["sha256"] == before[RULES]
    assert "fixed points table" in result.refreshed[RULES]

    text = card.read_text()
    assert "retrained" in text.lower() and before[SCORE][:12] in text
    assert f"{m['roc_auc']:.4f}" in text and f"{m['brier']:.4f}" in text and "0.9123" not in text
    assert "the caveat the configuration asks for" in text
    Scorer.load(cfg)  # the new set verifies and loads together

    # rollback restores the archived set as a whole, and archives the retrained set first
    restored = rollback(cfg)
    assert restored.version == version and set(restored.manifests) == set(MODEL_SET)
    assert _shas(models) == before and card.read_text() == CARD
    assert len(list_versions(cfg)) == 2 and restored.archived in list_versions(cfg)
    assert read_manifest(restored.archived / SCORE)["sha256"] == new["sha256"]
    Scorer.load(cfg)


def test_outcomes_as_full_lead_rows(project, leads, sample, tmp_path):
    cfg, _, _ = project
    new = leads[~leads["id"].isin(sample["id"])].head(50)
    full = tmp_path / "full_outcomes.csv"
    new.to_csv(full, sep=";", index=False)
    got = load_outcomes(cfg, full)
    assert got["id"].tolist() == new["id"].tolist() and got["compra"].tolist() == new["compra"].tolist()


def test_outcomes_in_parquet_with_whole_number_ids(project, tmp_path):
    """A typed export: the outcomes' ids are integers, matched with the leads' text ids."""
    cfg, outcomes, feats = project
    typed = pd.read_csv(outcomes, sep=";", dtype={"id": "int64"})
    typed.to_parquet(tmp_path / "outcomes.parquet", index=False)
    got = load_outcomes(cfg, tmp_path / "outcomes.parquet", feats)
    assert sorted(got["id"]) == sorted(typed["id"].astype(str)) and len(got) == len(typed)


def test_without_outcomes_retrain_reads_the_outcome_history(project, tmp_path, capsys):
    """No --outcomes: the latest state of each lead pulled from the CRM, converted -> positive,
    lost -> negative, open leads (here a won lead reopened) skipped until they mature; leads
    scored before inputs were recorded take their features from --leads (those not in it skipped)."""
    cfg, outcomes, feats = project
    d = cfg.data
    args = ["--config", str(cfg.source), "retrain", "--leads", str(feats), "--tolerance", "-1"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no outcome history yet; run `leadscoring pull` first" in err[0]

    known = pd.read_csv(outcomes, sep=";", dtype=str)
    ids, won = known[d.id_column].tolist(), known[d.target_column].astype(int).tolist()
    t = datetime(2026, 3, 1, tzinfo=UTC)
    rows = [OutcomeRow(i, "converted" if w else "lost", t, None, False, "{}") for i, w in zip(ids, won, strict=True)]
    rows.append(OutcomeRow("not-in-the-leads", "converted", t, None, False, "{}"))
    rows.append(OutcomeRow(ids[0], "open", t + timedelta(days=1), None, False, "{}"))  # reopened: latest wins
    rows.append(OutcomeRow(ids[1], "converted" if not won[1] else "lost", t + timedelta(days=1), None, False, "{}"))  # reversal
    append_outcome_rows(cfg.path("outcome_history"), rows)
    scored = [*ids, "not-in-the-leads"]  # scored by an earlier version: no inputs recorded
    append_scores(cfg.path("score_history"), scored, [50] * len(scored), "m0", t - timedelta(days=1))

    new = outcomes_from_history(cfg, feats, now=t + timedelta(days=2)).set_index(d.id_column)[d.target_column].astype(int)
    expected = dict(zip(ids[1:], [1 - won[1], *won[2:]], strict=True))
    assert new.to_dict() == expected

    # Months later the reopened lead, still open, has matured (monitoring.maturity_days): not converted.
    later = outcomes_from_history(cfg, feats, now=t + timedelta(days=61)).set_index(d.id_column)[d.target_column].astype(int)
    assert later.to_dict() == {**expected, ids[0]: 0}
    assert cli.main(args) == 0
    assert f"{len(ids)} new outcomes" in capsys.readouterr().out


def test_the_champion_s_own_training_leads_are_never_held_out_to_measure_it(project, sample, leads, tmp_path):
    """Outcomes of leads the champion learned from (the training export sent again) would
    measure it on its own leads: they train the challenger and are left out of the holdout."""
    cfg, _, _ = project
    own = tmp_path / "own.csv"
    sample.to_csv(own, sep=";", index=False)
    with pytest.raises(NotEnoughOutcomes, match=r"^800 of the 800 new outcomes are of leads the scoring model trained on"):
        retrain(cfg, own, tolerance=1.0)

    new = leads[~leads["id"].isin(sample["id"])].head(400)
    mixed = tmp_path / "mixed.csv"
    pd.concat([sample.head(100), new]).to_csv(mixed, sep=";", index=False)
    result = retrain(cfg, mixed, tolerance=1.0)  # tolerance 1: promoted, to read the new model's own record
    assert result.new_leads == 500 and result.holdout_leads == 200  # half of the 400 others
    assert "; 100 lead(s) the champion trained on left out of it" in result.holdout
    trained_on = in_ids_digest(read_manifest(cfg.path("models_dir") / SCORE)["training_ids"], new["id"].astype(str))
    assert trained_on.sum() == 200  # the challenger's own record: every new lead but the 200 held out


def test_a_model_saved_without_its_training_leads_is_retrained_with_a_warning(project, sample, tmp_path, caplog):
    cfg, _, _ = project
    path = cfg.path("models_dir") / SCORE
    model, manifest = load_model(path)
    save_model(model, path, **{k: v for k, v in _strip(manifest).items() if k != "training_ids"})  # an older project's
    own = tmp_path / "own.csv"
    sample.to_csv(own, sep=";", index=False)
    result = retrain(cfg, own, tolerance=-1.0)
    assert result.holdout_leads == 400 and "left out" not in result.holdout  # cannot be told apart ...
    assert "does not record the leads it trained on" in caplog.text  # ... and the operator is told so


def test_champion_kept_when_the_bar_is_impossible(project):
    cfg, outcomes, feats = project
    models = cfg.path("models_dir")
    before = _shas(models)
    kept = retrain(cfg, outcomes, feats, tolerance=-1.0)  # impossible bar: champion kept
    assert not kept.promoted and kept.archived is None
    assert _shas(models) == before and list_versions(cfg) == []
    assert (cfg.path("docs_dir") / "model_card.md").read_text() == CARD
    report = json.loads((cfg.path("results_dir") / "retrain_report.json").read_text())
    assert report["promoted"] is False and report["tolerance"] == -1.0


def test_rollback_verifies_the_whole_set_before_replacing_anything(tmp_path, small_models, capsys):
    cfg = load_config(write_project(tmp_path))
    models = cfg.path("models_dir")
    shutil.copytree(small_models, models)
    champion, manifest = load_model(models / SCORE)
    version, _ = replace_model_set(  # a different current model, the previous set archived
        models, lambda archived: save_model(champion, models / SCORE, **_strip(manifest), note="a newer model")
    )
    assert {p.name for p in version.iterdir()} >= {SCORE, SEGMENT, "lead_scoring_model.json", "segment_model.json"}
    before = _shas_present(models)
    with (version / SEGMENT).open("ab") as fh:  # damage one model of the archived set
        fh.write(b"x")
    with pytest.raises(ModelIntegrityError, match="segment_model.pkl"):
        rollback(cfg, version.name)
    assert _shas_present(models) == before and list_versions(cfg) == [version]  # nothing replaced, nothing archived

    assert cli.main(["--config", str(cfg.source), "rollback", "--list"]) == 0
    out = capsys.readouterr().out
    assert version.name in out and "lead_scoring_model.pkl, segment_model.pkl" in out


def test_a_replacement_failing_half_way_puts_the_previous_set_back(tmp_path, small_models):
    models = tmp_path / "models"
    shutil.copytree(small_models, models)
    card = tmp_path / "model_card.md"
    card.write_text("the card of the set in service\n")
    files = [p for p in models.iterdir() if p.is_file()]
    before = {p.name: sha256_file(p) for p in files}
    champion, manifest = load_model(models / SCORE)

    def half_way(_archived: Path | None) -> None:
        save_model(champion, models / SCORE, **_strip(manifest), note="a newer model")  # written, then ...
        card.write_text("the new card\n")
        (models / "extra_model.pkl").write_bytes(b"new")
        raise OSError("disk full")  # ... the rest of the set fails

    with pytest.raises(OSError, match="disk full"):
        replace_model_set(models, half_way, names=[*MODEL_SET, "extra_model.pkl"], extra=[card])
    assert {p.name: sha256_file(p) for p in models.iterdir() if p.is_file()} == before
    assert card.read_text() == "the card of the set in service\n" and not (models / "extra_model.pkl").exists()

    def card_then_fail(_archived: Path | None) -> None:
        card.write_text("the new card\n")
        raise OSError("disk full")

    empty = tmp_path / "no_models"  # a project without models yet: its card comes back all the same
    empty.mkdir()
    with pytest.raises(OSError, match="disk full"):
        replace_model_set(empty, card_then_fail, extra=[card])
    assert card.read_text() == "the card of the set in service\n" and [p.name for p in empty.iterdir()] == []


def _shas_present(models) -> dict[str, str]:
    return {n: read_manifest(models / n)["sha256"] for n in MODEL_SET if (models / n).is_file()}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty"),
        ("id;compra\n", "no leads"),
        ("id,compra\n1,0\n", "only one column found"),
        ("id;compra\n1;0\n2\n", "line 3 has 1 field(s) but the header has 2"),
        ("id;outcome\n1;0\n", "missing required column 'compra'"),
    ],
)
def test_bad_outcomes_files_are_one_line(project, tmp_path, capsys, text, expected):
    cfg, _, feats = project
    bad = tmp_path / "outcomes.csv"
    bad.write_text(text, encoding="utf-8")
    code = cli.main(["--config", str(cfg.source), "retrain", "--outcomes", str(bad), "--leads", str(feats)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"outcomes.csv: {expected}" in err[0]


def test_duplicate_outcome_ids_are_reported_by_file_line(project, tmp_path, capsys):
    cfg, outcomes, feats = project
    lines = outcomes.read_text(encoding="utf-8").splitlines()
    first_id = lines[1].split(";")[0]
    lines[7] = f"{first_id};{lines[7].split(';')[1]}"  # the 7th outcome (line 8) repeats the first (line 2)
    dup = tmp_path / "dup_outcomes.csv"
    dup.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code = cli.main(["--config", str(cfg.source), "retrain", "--outcomes", str(dup), "--leads", str(feats)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "dup_outcomes.csv: duplicate id(s)" in err[0] and "(line 2)" in err[0] and "(line 8)" in err[0], err[0]
