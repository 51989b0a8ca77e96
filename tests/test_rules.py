import numpy as np
import pandas as pd
import pytest

from leadscoring.training.rules import RuleScorer, RulesError, check_rules, load_rules
from leadscoring.training.woe import propose_rules

RULES = pd.DataFrame(
    [
        {"variable": "job", "kind": "level", "level": "Pro", "points": 30},
        {"variable": "job", "kind": "level", "level": "Missing", "points": -10},
        {"variable": "time", "kind": "range", "lower": 0, "upper": 100, "points": -5},
        {"variable": "time", "kind": "range", "lower": 50, "upper": np.inf, "points": 20},
        {"variable": "optin", "kind": "level", "level": "Yes", "points": 10},
    ]
)


def test_points_sum_first_match_wins_and_rescale():
    X = pd.DataFrame({"job": ["Pro", None, "Student"], "time": [200.0, 60.0, np.nan], "optin": [1.0, 0.0, np.nan]})
    rs = RuleScorer(rules=RULES, yes_no=["optin"]).fit(X)
    # time 60 matches [0,100) first (-5), not [50, inf)
    assert rs.points(X).tolist() == [30 + 20 + 10, -10 - 5, 0]
    # min total = -10 + -5 + 0 = -15, max = 30 + 20 + 10 = 60
    assert (rs.min_total_, rs.max_total_) == (-15, 60)
    np.testing.assert_allclose(rs.rule_score(X), [100.0, 0.0, 15 / 75 * 100])
    np.testing.assert_allclose(rs.decision_function(X), rs.rule_score(X))
    assert rs.predict(X).tolist() == [1, 0, 0]
    assert not hasattr(rs, "predict_proba")  # a points scale is not a probability


def test_rules_are_compared_on_ranking_only():
    from sklearn.model_selection import cross_validate

    from leadscoring.training.compare import RANKING_SCORING
    from leadscoring.training.evaluation import ranking_metrics

    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {"job": rng.choice(["Pro", "Student"], 200), "time": rng.uniform(0, 300, 200), "optin": rng.choice([0.0, 1.0], 200)}
    )
    y = ((X["job"] == "Pro") & (X["time"] > 100)).astype(int)
    res = cross_validate(RuleScorer(rules=RULES, yes_no=["optin"]), X, y, cv=3, scoring=RANKING_SCORING)
    assert (res["test_roc_auc"] > 0.8).all()
    m = ranking_metrics(y, RuleScorer(rules=RULES, yes_no=["optin"]).fit(X).decision_function(X))
    assert m["roc_auc"] > 0.8 and np.isnan(m["brier"]) and np.isnan(m["log_loss"])


def test_unknown_variable_and_malformed_table():
    X = pd.DataFrame({"job": ["Pro"]})
    with pytest.raises(KeyError, match="time"):
        RuleScorer(rules=RULES).fit(X).points(X)
    with pytest.raises(RulesError, match="row 2: kind"):
        check_rules(pd.DataFrame([{"variable": "a", "kind": "between", "points": 1}]))
    with pytest.raises(RulesError, match="lower < upper"):
        check_rules(pd.DataFrame([{"variable": "a", "kind": "range", "lower": 5, "upper": 1, "points": 1}]))
    with pytest.raises(RulesError, match="row 2, field points: must be a number, got 'treinta'"):
        check_rules(pd.DataFrame([{"variable": "a", "kind": "level", "level": "x", "points": "treinta"}]))
    with pytest.raises(RulesError, match="row 2, field lower: must be a number, got 'abc'"):
        check_rules(pd.DataFrame([{"variable": "a", "kind": "range", "lower": "abc", "upper": 1, "points": 1}]))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "cannot read"),
        ("variable,kind,level,points\nc,level,Pe\xf1a,3\n".encode("latin-1"), "UTF-8"),
        (b"variable,kind,level,points\nc,level,a,3,4,5\n", "cannot read"),
    ],
)
def test_an_unreadable_points_table_is_a_rules_error(tmp_path, content, expected):
    path = tmp_path / "scoring_rules.csv"
    path.write_bytes(content)
    with pytest.raises(RulesError, match=f"scoring_rules.csv: .*{expected}"):
        load_rules(path)


def test_proposed_points_follow_conversion():
    X = pd.DataFrame({"c": ["good"] * 100 + ["bad"] * 100})
    y = pd.Series([1] * 80 + [0] * 20 + [1] * 10 + [0] * 90)
    rules = propose_rules(X, y).set_index("level")["points"]
    assert rules["good"] > 0 > rules["bad"]
    assert rules["good"] == round(10 * np.log((80.5 / 90.5) / (20.5 / 110.5)))


def test_shipped_marketing_table_is_valid(cfg):
    from leadscoring.training.rules import load_rules

    rules = load_rules(cfg.path("rules_table"))
    assert set(rules["variable"]) <= set(cfg.data.columns.all)


def test_a_points_table_using_a_leaky_field_gives_way_to_the_proposal(tmp_path, cfg):
    """Marketing's table is set aside, with the file, row, field and value, when it gives points
    for a field the leakage audit keeps out of every score."""
    from leadscoring.training.rules import rules_for_client

    numeric = cfg.data.columns.numeric[0]
    table = pd.DataFrame(
        {"variable": [numeric, numeric], "kind": ["range", "range"], "lower": [0, 10], "upper": [10, 1e9], "points": [0, 5]}
    )
    table.to_csv(tmp_path / "rules.csv", index=False)
    proposed = pd.DataFrame({"variable": ["x"], "kind": ["level"], "level": ["a"], "points": [1.0]})
    rules, why = rules_for_client(tmp_path / "rules.csv", cfg, proposed)
    assert why is None and len(rules) == 2
    rules, why = rules_for_client(tmp_path / "rules.csv", cfg, proposed, blocked=[numeric])
    assert rules["variable"].tolist() == ["x"]
    assert why.startswith(f"rules.csv, row 2, field variable: '{numeric}' is kept out of every score by the leakage audit")


def test_proposing_on_named_variables_skips_those_the_cleaner_dropped():
    """In a CV fold the cleaner may drop a column that is constant there: the points are then
    proposed on the named variables the fold still has (it used to fail the fold)."""
    X = pd.DataFrame({"a": ["x", "y"] * 20, "b": np.arange(40.0)})
    y = np.array([0, 1] * 20)
    scorer = RuleScorer(variables=["a", "b", "dropped_in_this_fold"]).fit(X, y)
    assert set(scorer.rules_["variable"]) <= {"a", "b"} and len(scorer.rules_)


def test_a_points_table_may_write_yes_no_levels_as_the_export_does(cfg):
    """Marketing types the export's own yes/no (Sim/Não): read as Yes/No; anything else is
    refused naming the row, the field, the value and the spellings it may use."""
    from leadscoring.training.rules import RuleScorer, check_rules_against_config

    col = cfg.data.columns.yes_no[0]
    local = cfg.model_copy(update={"data": cfg.data.model_copy(update={"yes_values": ["Sim", "Yes"], "no_values": ["Não", "No"]})})
    table = pd.DataFrame({"variable": [col, col], "kind": ["level", "level"], "level": ["sim", " Não"], "points": [10, -5]})
    rules = check_rules_against_config(table, local, origin="rules.csv")
    assert rules["level"].tolist() == ["Yes", "No"]
    X = pd.DataFrame({col: [1.0, 0.0]})
    assert RuleScorer(rules, yes_no=[col]).fit(X, [1, 0]).decision_function(X).tolist() == [100.0, 0.0]
    bad = table.assign(level=["Talvez", "Não"])
    expected = r"^rules.csv row 2, field level: .* \(or as the export writes them: Sim, Não\), got 'Talvez'$"
    with pytest.raises(RulesError, match=expected):
        check_rules_against_config(bad, local, origin="rules.csv")
