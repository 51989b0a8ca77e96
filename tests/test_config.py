from pathlib import Path

import pytest
import yaml

from leadscoring.config import ConfigError, load_config

from .conftest import CONFIG, ROOT


def _write(tmp_path: Path, conf: object) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(yaml.safe_dump(conf) if not isinstance(conf, str) else conf, encoding="utf-8")
    return p


def _shipped() -> dict:
    return yaml.safe_load(CONFIG.read_text(encoding="utf-8"))


def test_shipped_config_loads_with_roles_and_root(cfg):
    assert cfg.root == ROOT
    assert cfg.data.id_column == "id" and cfg.data.target_column == "compra"
    assert "visitas_total" in cfg.data.columns.numeric
    assert cfg.path("raw_data") == ROOT / "02_Datos" / "01_Originales" / "Leads.csv"
    assert [b.name for b in cfg.scoring.buckets] == ["HOT", "WARM", "COLD"]


def test_output_root_moves_products_not_inputs(cfg, tmp_path):
    staged = cfg.with_output_root(tmp_path)
    assert staged.path("models_dir") == tmp_path / "04_Modelos"
    assert staged.path("raw_data") == cfg.path("raw_data")
    assert staged.path("rules_table") == cfg.path("rules_table")


def test_analyst_notes_are_an_input_read_from_the_project(cfg, tmp_path):
    assert cfg.path("analyst_notes") == ROOT / "01_Documentos" / "analyst_notes.md"
    assert cfg.with_output_root(tmp_path).path("analyst_notes") == cfg.path("analyst_notes")  # never staged


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "data: [unclosed"))


def test_a_run_setting_that_is_not_yaml_is_one_line(capsys):
    from leadscoring.cli import main

    assert main(["--config", str(CONFIG), "run", "--set", "sample_size=[1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--set 'sample_size=[1': the value is not valid YAML" in err


def test_a_configuration_not_in_utf8_names_its_line(tmp_path):
    data = CONFIG.read_bytes()
    start = data.rindex(b"\n", 0, data.index(b"labels:")) + 1
    path = tmp_path / "config.yaml"
    path.write_bytes(data[:start] + b"# Se\xf1al, saved by an editor in Latin-1\n" + data[start:])
    line = data[:start].count(b"\n") + 1
    with pytest.raises(ConfigError, match=rf"config.yaml, line {line}: not UTF-8 text \(byte 0xf1\)"):
        load_config(path)


def test_a_section_given_twice_is_an_error_naming_both_lines(tmp_path):
    """Plain YAML keeps the last of two ``loop:`` blocks silently: the first one's settings
    would be dropped without a word."""
    text = CONFIG.read_text(encoding="utf-8") + "\nloop:\n  max_age_days: 30\n"
    first = next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith("loop:"))
    last = len(text.splitlines()) - 1
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text))
    message = str(err.value)
    assert "\n" not in message
    assert f"line {last}: key 'loop' given twice (first on line {first})" in message


def test_merge_keys_may_override_and_an_unhashable_key_is_a_yaml_error():
    from leadscoring.config import read_yaml

    assert read_yaml("base: &b {x: 1, z: 0}\nc: {<<: *b, x: 3}\n")["c"] == {"x": 3, "z": 0}
    with pytest.raises(yaml.YAMLError, match="unhashable"):
        read_yaml("? [1, 2]\n: 3\n")


def test_a_key_given_twice_inside_a_section_is_an_error(tmp_path):
    text = CONFIG.read_text(encoding="utf-8").replace("  max_age_days: 90", "  max_age_days: 90\n  max_age_days: 30", 1)
    with pytest.raises(ConfigError, match="key 'max_age_days' given twice"):
        load_config(_write(tmp_path, text))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c["data"]["columns"]["categorical"].append("visitas_total"), "more than one role"),
        (lambda c: c["data"].pop("id_column"), "data.id_column"),
        (lambda c: c["split"].update(validation_share=1.5), "split.validation_share"),
        (lambda c: c["scoring"]["buckets"].reverse(), "highest min_score"),
        (lambda c: c["data"].update(colour="blue"), "data.colour"),
        (lambda c: c["features"]["ratios"].update(bad=["visitas_total", "origen"]), "not a numeric column"),
        (lambda c: c["data"].update(post_contact=["nonexistent"]), "post_contact"),
        (lambda c: c["data"].update(encoding="utf-9"), "encoding: 'utf-9' is not a known text encoding"),
        (lambda c: c["data"].update(separator=";;"), "separator: ';;' must be one character"),
        (lambda c: c["data"].update(date_format="%d.%m.%Y %H:%i"), "date_format: 'i' is a bad directive"),
    ],
)
def test_bad_config_names_the_key(tmp_path, mutate, message):
    conf = _shipped()
    mutate(conf)
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, conf))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_path_key(cfg):
    with pytest.raises(ConfigError, match="unknown path key"):
        cfg.path("nowhere")
