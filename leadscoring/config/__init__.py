"""Project configuration: one YAML file describes the dataset and the run.

Everything that differs between two clients' exports (paths, separator, id and target
columns, column roles, placeholder values, thresholds) lives in
``01_Documentos/config.yaml``. :func:`load_config` reads it into a typed, validated
:class:`ProjectConfig`; any problem is reported as a :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import yaml
from pydantic import ValidationError, model_validator

from leadscoring.config.events import DeriveConfig, EventFeature, EventsConfig
from leadscoring.config.notes import NOTES_TAG, analyst_note, read_analyst_notes
from leadscoring.config.sections import (
    ALERTS_WEBHOOK_ENV,
    CONFIG_ENV,
    DEFAULT_CONFIG,
    DEFAULT_CRM_FIELDS,
    INPUT_PATHS,
    AlertsConfig,
    Bucket,
    CleaningConfig,
    ColumnRoles,
    ConfigError,
    CrmConfig,
    DataConfig,
    ExperimentConfig,
    FeaturesConfig,
    GradesConfig,
    LeakageConfig,
    LoopConfig,
    ModellingConfig,
    MonitoringConfig,
    PathsConfig,
    ReasonsConfig,
    ReportConfig,
    RestConfig,
    RestListConfig,
    RunConfig,
    ScoringConfig,
    SegmentationConfig,
    ServiceConfig,
    SplitConfig,
    StrictSection,
)

__all__ = [
    "DEFAULT_CONFIG",
    "CONFIG_ENV",
    "ConfigError",
    "PathsConfig",
    "INPUT_PATHS",
    "ColumnRoles",
    "DataConfig",
    "SplitConfig",
    "CleaningConfig",
    "FeaturesConfig",
    "EventsConfig",
    "EventFeature",
    "DeriveConfig",
    "ModellingConfig",
    "LeakageConfig",
    "Bucket",
    "ReasonsConfig",
    "GradesConfig",
    "DEFAULT_CRM_FIELDS",
    "ScoringConfig",
    "SegmentationConfig",
    "RunConfig",
    "ReportConfig",
    "MonitoringConfig",
    "ServiceConfig",
    "CrmConfig",
    "LoopConfig",
    "ExperimentConfig",
    "AlertsConfig",
    "ALERTS_WEBHOOK_ENV",
    "RestConfig",
    "RestListConfig",
    "ProjectConfig",
    "find_config",
    "load_config",
    "yaml_problem",
    "NOTES_TAG",
    "analyst_note",
    "read_analyst_notes",
]


class ProjectConfig(StrictSection):
    """The whole configuration; ``root`` is absolute once loaded."""

    root: Path
    paths: PathsConfig
    data: DataConfig
    split: SplitConfig = SplitConfig()
    cleaning: CleaningConfig = CleaningConfig()
    features: FeaturesConfig = FeaturesConfig()
    modelling: ModellingConfig = ModellingConfig()
    leakage: LeakageConfig = LeakageConfig()
    scoring: ScoringConfig = ScoringConfig()
    segmentation: SegmentationConfig = SegmentationConfig()
    run: RunConfig = RunConfig()
    report: ReportConfig = ReportConfig()
    service: ServiceConfig = ServiceConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    loop: LoopConfig = LoopConfig()
    experiment: ExperimentConfig = ExperimentConfig()
    alerts: AlertsConfig = AlertsConfig()
    events: EventsConfig | None = None
    crm: CrmConfig | None = None
    source: Path | None = None
    output_root: Path | None = None

    @property
    def event_columns(self) -> list[str]:
        """The behavioural feature columns (computed from events, absent from raw exports)."""
        return [f.name for f in self.events.features] if self.events else []

    @property
    def model_data(self) -> DataConfig:
        """The data section as the models see it: ``data`` (as written in the configuration)
        with the behavioural features (``events.features``) added, once each, as numeric
        engagement columns, with their labels (``events.features[].label``) unless ``data.labels``
        names them. The one place where event features join the configured columns; without an
        events section it is ``data`` itself."""
        if self.events is None:
            return self.data
        d = self.data
        names = self.event_columns
        labels = dict(d.labels)
        for f in self.events.features:
            if f.label and f.name not in labels:
                labels[f.name] = f.label
        columns = d.columns.model_dump()
        columns["numeric"] = [*d.columns.numeric, *(n for n in names if n not in d.columns.numeric)]
        return DataConfig.model_validate(
            {
                **d.model_dump(),
                "columns": columns,
                "engagement_columns": [*d.engagement_columns, *(n for n in names if n not in d.engagement_columns)],
                "labels": labels,
            }
        )

    @model_validator(mode="after")
    def _check_features(self) -> ProjectConfig:
        channel = self.segmentation.channel_column
        if channel is not None and channel not in self.data.columns.categorical:
            raise ValueError(f"segmentation.channel_column: '{channel}' is not a categorical column")
        try:  # validated here: e.g. an event feature named like a categorical column is refused
            d = self.model_data
        except ValidationError as err:
            raise ValueError(
                "events.features: " + "; ".join(e["msg"].removeprefix("Value error, ") for e in err.errors())
            ) from None
        numeric = set(d.columns.numeric)
        names = set(d.columns.all)
        for kind in ("products", "ratios"):
            for name, (a, b) in getattr(self.features, kind).items():
                if name in names:
                    raise ValueError(f"features.{kind}.{name}: the name clashes with a data column")
                for col in (a, b):
                    if col not in numeric:
                        raise ValueError(f"features.{kind}.{name}: '{col}' is not a numeric column")
        if self.events is not None and self.events.derive is not None:
            self.events.derive.check_roles(self.data.columns)
        if self.crm is not None and self.crm.kind == "rest":
            pushed = {*self.scoring.crm_fields.values(), self.experiment.control_field}
            named = {m[len("fields.") :] for m in re.findall(r"\{(fields\.\w+)\}", json.dumps(self.crm.rest.push_body))}
            if unknown_fields := sorted(named - pushed):
                raise ValueError(
                    f"crm.rest.push_body: {', '.join('{fields.' + n + '}' for n in unknown_fields)} names no pushed field; "
                    f"pushed: {sorted(pushed)} (scoring.crm_fields, experiment.control_field)"
                )
        buckets = [b.name for b in self.scoring.buckets]
        unknown = sorted(set(self.alerts.levels or []) - set(buckets))
        if unknown:
            raise ValueError(f"alerts.levels: {unknown} are not buckets (scoring.buckets: {buckets})")
        return self

    def root_path(self, value: str) -> Path:
        """A path of the configuration (e.g. ``events.path``) made absolute against the root."""
        p = Path(value)
        return p if p.is_absolute() else self.root / p

    def path(self, key: str) -> Path:
        """Absolute path of ``paths.<key>``.

        Products (everything but raw data, notebooks and the rules table) resolve under
        ``output_root`` when one is set, so a production run can stage its products and
        only promote them once every notebook succeeded.
        """
        if key not in PathsConfig.model_fields:
            raise ConfigError(f"unknown path key '{key}'; known: {sorted(PathsConfig.model_fields)}")
        rel = Path(getattr(self.paths, key))
        if rel.is_absolute():
            return rel
        base = self.output_root if (self.output_root is not None and key not in INPUT_PATHS) else self.root
        return base / rel

    def with_output_root(self, output_root: str | os.PathLike[str] | None) -> ProjectConfig:
        """A copy whose products are written under ``output_root`` (None: the project root)."""
        if output_root is None:
            return self
        out = Path(output_root)
        if not out.is_absolute():
            out = self.root / out
        return self.model_copy(update={"output_root": out})


def find_config(start: str | os.PathLike[str] | None = None) -> Path:
    """Locate the configuration: ``$LEADSCORING_CONFIG``, else ``01_Documentos/config.yaml``
    in ``start`` (default: the working directory) or one of its parents."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / DEFAULT_CONFIG
        if candidate.is_file():
            return candidate
    raise ConfigError(f"no {DEFAULT_CONFIG} found in {here} or its parents; pass --config or set {CONFIG_ENV}")


def _format_validation_error(err: ValidationError, source: Path) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        parts.append(f"{where}: {e['msg']}")
    return f"invalid configuration {source}: " + "; ".join(parts)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping: plain YAML keeps the
    last silently, so a section written twice (two ``loop:`` blocks) would drop the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:  # type: ignore[override]
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *base": merged keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                hash(key)
            except TypeError:
                continue  # YAML's own "found unhashable key" error follows
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (first on line {seen[key]}): merge them into one", key_node.start_mark
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(text: str) -> object:
    """YAML text as Python objects (safe: no arbitrary objects), a key given twice in one
    mapping being an error (:class:`yaml.YAMLError`)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: the problem and the line it is on, when YAML knows them."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem and exc.problem_mark is not None:
        return f"line {exc.problem_mark.line + 1}: {exc.problem}"
    return " ".join(str(exc).split())


def load_config(path: str | os.PathLike[str] | None = None) -> ProjectConfig:
    """Read and validate the YAML configuration (see module docstring)."""
    source = Path(path) if path is not None else find_config()
    if not source.is_file():
        raise ConfigError(f"configuration file not found: {source}")
    data = source.read_bytes()
    try:
        raw = read_yaml(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"configuration {source}, line {line}: not UTF-8 text (byte {data[exc.start]:#04x}); save it as UTF-8"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"configuration {source} is not valid YAML: {yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"configuration {source} must be a mapping of sections, got {type(raw).__name__}")
    root = (source.resolve().parent / str(raw.pop("root", ".."))).resolve()
    try:
        return ProjectConfig(root=root, source=source.resolve(), **raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None
    except TypeError as err:  # e.g. a section given as a list
        raise ConfigError(f"invalid configuration {source}: {err}") from None
